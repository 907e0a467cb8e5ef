"""A sweep runs inside the caller's process (a notebook, a service, pytest): it must leave that process's
logging alone. Hydra's job_logging used to run dictConfig, which closes every handler in the process; absl's
handler (imported by rouge-score) closes its stream on close, so an eval followed by a sweep closed the
caller's stderr. Regression test for issue 9."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from tuneforge.sweep.command import cmd_sweep


class ClosingHandler(logging.StreamHandler):
    """Behaves like absl's PythonHandler: closing the handler closes the stream it writes to."""

    def close(self) -> None:
        self.stream.close()
        super().close()


def test_sweep_keeps_the_callers_handlers_and_streams(out_root: Path) -> None:
    stream = io.StringIO()
    handler = ClosingHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        status = cmd_sweep(["recipe=lora-tiny", "hparams.max_steps=2", "hparams.eval_steps=null",
                            f"output_root={out_root}", "sweep=grid", "optim.lr=1e-3"])
        assert status == 0
        assert not stream.closed, "the sweep closed a handler's stream that the caller owns"
        assert handler in root.handlers, "the sweep removed the caller's logging handler"
        logging.getLogger("host.app").warning("still logging")  # the caller's own logger, not tuneforge's
        assert "still logging" in stream.getvalue()
    finally:
        root.removeHandler(handler)
    (trial_log,) = out_root.glob("sweeps/lora-tiny/*/trial-0/trial.log")
    assert "trial 0 completed" in trial_log.read_text()
    tuneforge = logging.getLogger("tuneforge")
    assert not [h for h in tuneforge.handlers if isinstance(h, logging.FileHandler)], "trial.log handler left open"


def test_eval_metrics_leave_no_handler_that_closes_the_callers_stream() -> None:
    """After eval's metrics (rouge-score -> absl), a dictConfig elsewhere in the process (axolotl's import
    does one) must not close the stream that was sys.stderr when the metrics ran."""
    import contextlib
    import logging.config

    from tuneforge.evaluation.metrics import generation_metrics

    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        generation_metrics(["Dạ, có ạ."], ["Dạ, có ạ."])
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert not stream.closed


def test_validating_an_axolotl_config_leaves_the_hosts_logging_alone() -> None:
    """Importing axolotl.cli runs dictConfig and setLoggerClass(AxolotlLogger), whose filter dropped the INFO
    records of every logger created afterwards (a later sweep's trial.log came out empty)."""
    from tuneforge.backends.axolotl import build_axolotl_config, validate_axolotl_config
    from tuneforge.config.compose import load_run_config

    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLoggerClass())
    run = load_run_config(["recipe=lora-tiny", "backend=axolotl"])
    cfg = build_axolotl_config(run, Path("/tmp/run"), base_model="/m", data={"train": "t", "val": "v"})
    validate_axolotl_config(cfg, normalize=False, warnings=[])
    assert (list(root.handlers), root.level, logging.getLoggerClass()) == before
    stream = io.StringIO()
    fresh = logging.getLogger("host.created.after.axolotl")
    handler = logging.StreamHandler(stream)
    fresh.addHandler(handler)
    fresh.setLevel(logging.INFO)
    try:
        fresh.info("an info record")
    finally:
        fresh.removeHandler(handler)
    assert "an info record" in stream.getvalue()
