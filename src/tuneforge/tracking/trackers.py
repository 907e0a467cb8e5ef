"""Run tracking: ``tracking=wandb`` (offline by default) or ``tracking=tensorboard`` (tensorboardX).

Everything a tracker writes stays inside the run directory: wandb's run files, cache, config and data dirs
(``<run>/wandb/``; nothing in ``~``), TensorBoard event files (``<run>/tensorboard/``). The logged config is
the redacted one, and in offline mode WANDB_API_KEY is kept out of wandb's environment altogether, so a
key can end up neither in a log nor in the run directory. ``wandb sync <run>/wandb/offline-run-*`` uploads
an offline run later.

Hooks: the native backend adds :func:`tracking_callbacks` to its Trainer (train metrics), eval adds its
results through :func:`log_eval_results`, and :func:`close_trackers` ends a run's trackers after training.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.callbacks import CallbackBase
from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)

WANDB_MODES = ("offline", "online", "disabled")
# open trackers of this process by run directory: training and the eval that follows share one
_OPEN: dict[Path, Tracker] = {}


def check_tracking(run: RunConfig) -> Iterable[str]:
    t = run.tracking
    if t.name == "wandb" and t.mode not in WANDB_MODES:
        yield f"tracking.mode={t.mode!r} is not valid; choose one of: {', '.join(WANDB_MODES)}"
    if t.name == "wandb" and t.mode == "online" and not os.environ.get("WANDB_API_KEY"):
        netrc = Path.home() / ".netrc"
        if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
            yield ("tracking.mode=online needs a W&B key: set WANDB_API_KEY (or `wandb login`), "
                   "or keep the default tracking.mode=offline and `wandb sync` later")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def train_log_keys(logs: dict[str, Any]) -> dict[str, float]:
    """Trainer logs -> ``train/<key>`` and ``eval/<key>`` scalars (named as transformers' integrations do)."""
    out: dict[str, float] = {}
    for k, v in logs.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}"] = float(v)
    return out


def eval_scalars(results: dict[str, Any], metric_keys: Iterable[str]) -> dict[str, float]:
    out = {}
    for side in ("base", "finetuned", "delta"):
        for key in metric_keys:
            v = results.get(side, {}).get(key)
            if isinstance(v, (int, float)):
                out[f"test/{side}/{key}"] = float(v)
    return out


@dataclass(frozen=True)
class EvalLog:
    """What eval hands a tracker (eval renders it; tracking does not import evaluation)."""

    results: dict[str, Any]
    metric_keys: tuple[str, ...]
    table_markdown: str


class Tracker:
    """What both trackers do: log scalars at a step, log eval results, close."""

    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def log_eval(self, ev: EvalLog, step: int) -> None: ...

    def close(self) -> None: ...


# --- wandb -------------------------------------------------------------------------------------------------

def wandb_env(run: RunConfig, run_dir: Path) -> dict[str, str]:
    """The WANDB_* variables that keep every wandb file inside the run directory."""
    root = run_dir / "wandb"
    return {
        "WANDB_DIR": str(run_dir),  # wandb adds its own wandb/ below this
        "WANDB_CACHE_DIR": str(root / ".cache"),
        "WANDB_CONFIG_DIR": str(root / ".config"),
        "WANDB_DATA_DIR": str(root / ".data"),
        "WANDB_ARTIFACT_DIR": str(root / ".artifacts"),
        "WANDB_MODE": run.tracking.mode,
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",  # stdout capture would copy whatever was printed into the run files
    }


def wandb_run_id(run: RunConfig, run_dir: Path) -> str:
    """Stable per run directory, so eval results (even from a later `tuneforge eval`) join the same run."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{run.name}-{run_dir.name}")[:48]
    return f"{slug}-{hashlib.sha256(str(run_dir).encode()).hexdigest()[:8]}"


@contextmanager
def _wandb_environment(run: RunConfig, run_dir: Path) -> Iterator[None]:
    """Set the WANDB_* variables; while offline, hide WANDB_API_KEY from wandb (and its service process)."""
    env = wandb_env(run, run_dir)
    for d in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        Path(env[d]).mkdir(parents=True, exist_ok=True)
    hidden = os.environ.pop("WANDB_API_KEY", None) if run.tracking.mode != "online" else None
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if hidden is not None:
            os.environ["WANDB_API_KEY"] = hidden


class WandbTracker(Tracker):
    def __init__(self, run: RunConfig, run_dir: Path):
        import wandb

        from tuneforge.rundir import redact, run_to_dict

        t = run.tracking
        # kept set while the run is open: wandb reads WANDB_CACHE_DIR etc. lazily, not only in init()
        self.environment = ExitStack()
        self.environment.enter_context(_wandb_environment(run, run_dir))
        # wandb records the process's argv (and program) in its run files: a secret typed on the command line
        # (+launcher.env.X=...) would land there. Hide argv while the run starts; metadata stays off.
        import sys

        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            self.wb = wandb.init(
                project=t.project, entity=t.entity, mode=t.mode, dir=str(run_dir),
                id=wandb_run_id(run, run_dir), resume="allow", name=f"{run.name}/{run_dir.name}",
                tags=list(t.tags) or None, config=redact(run_to_dict(run)), reinit="create_new",
                settings=wandb.Settings(console="off", x_disable_stats=True, x_disable_meta=True, save_code=False,
                                        disable_git=True),
            )
        except BaseException:
            self.environment.close()
            raise
        finally:
            sys.argv = argv
        log.info("wandb %s run %s in %s", t.mode, self.wb.id, run_dir / "wandb")

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.wb.log({**scalars, "train/global_step": step})

    def log_eval(self, ev: EvalLog, step: int) -> None:
        import wandb

        results = ev.results
        scalars = eval_scalars(results, ev.metric_keys)
        self.wb.log(scalars)
        for k, v in scalars.items():
            self.wb.summary[k] = v
        table = wandb.Table(columns=["prompt", "reference", "base", "finetuned"],
                            data=[[s["prompt"], s["reference"], s["base"], s["finetuned"]]
                                  for s in results.get("samples", [])])
        self.wb.log({"test/samples": table})

    def close(self) -> None:
        try:
            self.wb.finish()
        finally:
            self.environment.close()


# --- tensorboard -------------------------------------------------------------------------------------------

class TensorBoardTracker(Tracker):
    def __init__(self, run: RunConfig, run_dir: Path):
        import yaml
        from tensorboardX import SummaryWriter

        from tuneforge.rundir import redact, run_to_dict

        self.writer = SummaryWriter(logdir=str(run_dir / "tensorboard"), flush_secs=10)
        config_text = yaml.safe_dump(redact(run_to_dict(run)), sort_keys=False, allow_unicode=True)
        self.writer.add_text("config", "```\n" + config_text + "\n```", 0)
        self.last_step = 0

    def log(self, scalars: dict[str, float], step: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        self.last_step = max(self.last_step, step)

    def log_eval(self, ev: EvalLog, step: int) -> None:
        for k, v in eval_scalars(ev.results, ev.metric_keys).items():
            self.writer.add_scalar(k, v, step)
        self.writer.add_text("test/metrics", ev.table_markdown, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


TRACKERS: dict[str, type[Tracker]] = {"wandb": WandbTracker, "tensorboard": TensorBoardTracker}


def open_tracker(run: RunConfig, run_dir: Path) -> Tracker | None:
    """The run's tracker in this process (opened once), or None for ``tracking=none`` / a non-zero rank."""
    if run.tracking.name == "none" or run.tracking.mode == "disabled" or int(os.environ.get("RANK", "0")):
        return None
    run_dir = Path(run_dir).resolve()
    if run_dir not in _OPEN:
        _OPEN[run_dir] = TRACKERS[run.tracking.name](run, run_dir)
        # registered after wandb.init registered its own teardown, so (atexit runs last-in first-out) a
        # worker process that never reaches close_trackers finishes its run while wandb can still write
        atexit.unregister(_close_all)
        atexit.register(_close_all)
    return _OPEN[run_dir]


def _close_all() -> None:
    for run_dir in list(_OPEN):
        try:
            close_trackers(run_dir)
        except Exception as exc:  # noqa: BLE001 - at interpreter exit a failed flush is reported, not raised
            log.warning("tracking: could not close the tracker of %s: %s", run_dir, exc)


def close_trackers(run_dir: Path) -> None:
    tracker = _OPEN.pop(Path(run_dir).resolve(), None)
    if tracker is not None:
        tracker.close()


def log_eval_results(run: RunConfig, run_dir: Path, ev: EvalLog) -> None:
    """Eval results into the run's tracker: the open one after training, or the same run reopened later."""
    tracker = open_tracker(run, run_dir)
    if tracker is None:
        return
    step = 0
    summary = Path(run_dir) / "summary.json"
    if summary.is_file():
        import json

        step = int(json.loads(summary.read_text()).get("steps") or 0)
    tracker.log_eval(ev, step)


class TrackingCallback(CallbackBase):
    """transformers TrainerCallback (by duck typing, like MetricsCallback): Trainer logs -> the tracker."""

    def __init__(self, run: RunConfig, run_dir: Path):
        self.run, self.run_dir = run, run_dir


    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            open_tracker(self.run, self.run_dir)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        tracker = open_tracker(self.run, self.run_dir)
        if tracker is not None:
            tracker.log(train_log_keys(logs), state.global_step)


def tracking_callbacks(run: RunConfig, run_dir: Path) -> list[Any]:
    """The native backend's hook: Trainer callbacks for ``run.tracking`` (none for tracking=none)."""
    if run.tracking.name == "none":
        return []
    return [TrackingCallback(run, Path(run_dir))]
