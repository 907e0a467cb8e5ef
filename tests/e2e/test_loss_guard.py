"""Issue 12 §5: a run that trains to garbage ends FAILED (step + likely cause), never complete with exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.errors import TrainingFailedError
from tuneforge.training_guards import LossGuardCallback


def _only_run_dir(root: Path) -> Path:
    (d,) = [p for p in root.glob("*/*") if p.is_dir()]
    return d


def test_diverging_run_stops_as_failed(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    rc = main(["train", "recipe=lora-tiny", "dataset=sample-chat", f"output_root={out}", "hparams.max_steps=6",
               "hparams.eval_steps=null", "optim.lr=1e30"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "training diverged" in err and "optim.lr=1e+30" in err and "Traceback" not in err
    d = _only_run_dir(out)
    assert not (d / "summary.json").exists() and not (d / "RUNNING").exists()
    assert "TrainingFailedError" in (d / "FAILED").read_text() and "at step" in (d / "FAILED").read_text()


@pytest.mark.slow
def test_rows_with_no_trained_token_are_refused_not_trained_to_zero_loss(tmp_path: Path, capsys) -> None:
    """seq_len=8 cuts every answer off (packed or not): with assistant-only loss that used to train on nothing,
    logging a loss of exactly 0.0; they are now refused, naming seq_len, before a run directory exists (issue 26:
    nothing FAILED is left behind for a value a check could have caught; the zero-loss guard itself is checked on
    the Trainer's state below)."""
    for packing in ("true", "false"):
        out = tmp_path / f"o-{packing}"
        rc = main(["train", "recipe=lora-tiny", "dataset=sample-chat", f"output_root={out}", "hparams.max_steps=2",
                   "hparams.eval_steps=null", f"hparams.packing={packing}", "hparams.seq_len=8"])
        err = capsys.readouterr().err
        assert rc == 2 and "no assistant token left within hparams.seq_len=8" in err, err[-2000:]
        assert "Traceback" not in err
        assert not [p for p in out.glob("*/*") if p.is_dir()], "a refused value must not leave a run directory"


def test_guard_rules_on_the_trainers_own_state() -> None:
    run = load_run_config(["recipe=lora-tiny"])
    state, control = TrainerState(), TrainerControl()
    guard = LossGuardCallback(run)
    for step, loss in enumerate([7.5, 0.0, 7.1, 0.0, 0.0], 1):  # isolated zeros are not a run of them
        state.global_step = step
        guard.on_log(None, state, control, logs={"loss": loss})
    state.global_step = 6
    with pytest.raises(TrainingFailedError, match="exactly 0.0 for 3 logged steps in a row"):
        guard.on_log(None, state, control, logs={"loss": 0.0})
    with pytest.raises(TrainingFailedError, match="loss is inf at step 6"):
        LossGuardCallback(run).on_log(None, state, control, logs={"loss": float("inf")})
    with pytest.raises(TrainingFailedError, match="eval_loss is nan"):
        LossGuardCallback(run).on_log(None, state, control, logs={"eval_loss": float("nan")})
    short = LossGuardCallback(run)
    short.on_log(None, state, control, logs={"loss": 0.0})
    with pytest.raises(TrainingFailedError, match="every logged loss is exactly 0.0"):
        short.on_train_end(None, state, control)
