"""One trial, as Hydra's sweeper calls it (through :mod:`tuneforge.sweep.hydra_app`): train into the trial
directory and record trial.json."""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneforge.sweep.preflight import TRIAL_FILE

log = logging.getLogger(__name__)


def run_trial(cfg: Any) -> float:
    """One trial; its log also goes to ``<trial dir>/trial.log`` (a handler removed when the trial ends)."""
    from hydra.core.hydra_config import HydraConfig

    from tuneforge.console import configure_logging, log_to_file

    if not logging.getLogger("tuneforge").hasHandlers():
        configure_logging()  # a submitit trial process starts with none (Hydra's job_logging is none)
    trial_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    with log_to_file(trial_dir / "trial.log"):
        return _run_trial(cfg, trial_dir)


def _run_trial(cfg: Any, trial_dir: Path) -> float:
    from hydra.core.hydra_config import HydraConfig

    from tuneforge.config.compose import to_run_config
    from tuneforge.config.validate import validate
    from tuneforge.rundir import atomic_write_json

    hc = HydraConfig.get()
    overrides = [o for o in hc.overrides.task if not o.lstrip("+").startswith("sweep=")]
    rec: dict[str, Any] = {"num": hc.job.num, "overrides": overrides, "run_dir": str(trial_dir),
                           "status": "running", "started": datetime.now().isoformat(timespec="seconds")}
    slurm_id = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        slurm_id = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    t0 = time.perf_counter()
    objective = math.nan
    try:
        run = to_run_config(cfg)
        validate(run)
        run.run_dir = str(trial_dir)
        if slurm_id:
            from tuneforge.job_index import record_job

            rec["slurm_job_id"] = slurm_id
            record_job(Path(run.output_root), job_id=slurm_id, run_dir=trial_dir, name=run.name,
                       kind="sweep-trial", tracker="slurm")  # submitit ran it as a Slurm array task
        atomic_write_json(trial_dir / TRIAL_FILE, rec)
        from tuneforge.train import train

        summary = train(run, quiet=True)
        tokens, runtime = summary.get("tokens"), summary.get("train_runtime_s")
        rec.update(
            status="completed",
            eval_loss=summary.get("eval_loss"),
            train_loss=summary.get("train_loss"),
            last_loss=summary.get("last_loss"),
            steps=summary.get("steps"),
            tokens_per_s=round(tokens / runtime, 1) if tokens and runtime else None,
            wall_time_s=summary.get("wall_time_s"),
        )
        objective_key = "eval_loss" if rec["eval_loss"] is not None else "last_loss"
        sign = 1.0
        if summary.get("objective_key"):  # the backend names its own (sentence-transformers: val MRR@10)
            objective_key = summary["objective_key"]
            rec[objective_key] = summary.get(objective_key)
            sign = -1.0 if summary.get("objective_higher_is_better") else 1.0  # the sweep minimizes
        elif objective_key != "eval_loss":
            log.warning("trial %s has no eval loss (no validation split): using the last training loss",
                        hc.job.num)
        rec["objective_key"] = objective_key
        value = rec[objective_key]
        objective = sign * float(value) if value is not None else math.nan
        if not math.isfinite(objective):
            rec["status"] = "failed"
            rec["error"] = f"objective ({objective_key}) is {value}"
    except Exception as exc:  # a failed trial is recorded; the sweep goes on
        log.exception("trial %s failed", hc.job.num)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        rec.update(status="failed", error=f"{type(exc).__name__}: {first_line}")
        rec.setdefault("wall_time_s", round(time.perf_counter() - t0, 3))
    rec["objective"] = objective if math.isfinite(objective) else None
    rec["finished"] = datetime.now().isoformat(timespec="seconds")
    atomic_write_json(trial_dir / TRIAL_FILE, rec)
    log.info("trial %s %s: objective %s  (%s)", hc.job.num, rec["status"], rec["objective"],
             " ".join(overrides))
    return objective


# --- results: table, best command, plot ---------------------------------------------------------------
