"""The job side of every batch executor (Slurm, Ray), written once: what a job does to its run directory.

A batch job finishes its own run directory, because the process that submitted it is long gone:

    mark_started(run_dir, "slurm job 12 on node1")   RUNNING written; FAILED and an old worker_result.json removed
    mark_failed(run_dir, "slurm job 12", why)        FAILED written (with why); RUNNING removed; returns 1
    finish_from_workers(run, run_dir, where, ...)    worker_result.json -> finish_run (summary.json, eval after
                                                     training), or FAILED when the workers wrote none

The run-directory state files are named in :mod:`tuneforge.rundir` (``RUNNING``, ``FAILED``, ``WORKER_RESULT``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tuneforge.rundir import FAILED, RUNNING, WORKER_RESULT
from tuneforge.schema.run import RunConfig


def mark_started(run_dir: Path, where: str) -> None:
    """The job runs now: clear what an earlier attempt left (FAILED, its worker result) and say where."""
    (run_dir / FAILED).unlink(missing_ok=True)
    (run_dir / WORKER_RESULT).unlink(missing_ok=True)
    (run_dir / RUNNING).write_text(where + "\n")


def mark_failed(run_dir: Path, job: str, why: str, *, hint: str = "") -> int:
    """End the run as failed: FAILED holds the reason (``tuneforge runs``/``jobs`` show it); returns 1."""
    (run_dir / FAILED).write_text(f"{job}: {why}{hint}\n")
    (run_dir / RUNNING).unlink(missing_ok=True)
    print(f"tuneforge: {job} failed: {why}", file=sys.stderr, flush=True)
    return 1


def finish_from_workers(run: RunConfig, run_dir: Path, job: str, elapsed_s: float, *, hint: str = "",
                        **extra: Any) -> int:
    """The workers' result (rank 0 writes worker_result.json) becomes the run's summary; none is a failure."""
    from tuneforge.finish import finish_run

    result_path = run_dir / WORKER_RESULT
    if not result_path.is_file():
        return mark_failed(run_dir, job, f"the workers wrote no {WORKER_RESULT}", hint=hint)
    finish_run(run, run_dir, json.loads(result_path.read_text()), elapsed_s, **extra)
    return 0
