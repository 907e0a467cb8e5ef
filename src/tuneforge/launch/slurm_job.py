"""Slurm, seen from the job and from ``tuneforge jobs`` / ``cancel``.

Job side (``python -m tuneforge.launch.slurm_job job-start|job-end <run_dir> [srun status]``, called by the
rendered ``job.sbatch``): the job finishes its own run directory through :mod:`tuneforge.launch.job_side`
(summary.json or FAILED), because the submitting process is long gone. On the preemption signal the trainer
saves a complete checkpoint and leaves a PREEMPTED marker (:mod:`tuneforge.preemption`); job-end then
requeues the job, and the requeued job resumes from that checkpoint (the native backend resumes from the
latest complete checkpoint of its run directory).

Tracking side: :func:`job_states` asks Slurm for many jobs in one ``squeue`` call, then ``sacct`` for the ones
it has forgotten; :func:`cancel` runs ``scancel`` for the job a run directory records.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneforge.launch.job_side import finish_from_workers, mark_failed, mark_started
from tuneforge.rundir import FAILED, PREEMPTED, RUNNING

JOB_INFO_NAME = "slurm_job.json"
SCRIPT_NAME = "job.sbatch"


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout if proc.returncode == 0 else None


def job_states(entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """job id -> {state, time, nodes, where, source}: squeue for jobs Slurm still holds, sacct for older ones."""
    job_ids = [e["job_id"] for e in entries]
    if not job_ids:
        return {}
    states: dict[str, dict[str, str]] = {}
    out = _run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%M|%D|%R"]) or ""
    for line in out.splitlines():
        jid, state, elapsed, nodes, where = (line.split("|") + [""] * 5)[:5]
        states[jid.strip()] = {"state": state, "time": elapsed, "nodes": nodes, "where": where,
                               "source": "squeue"}
    missing = [j for j in job_ids if j not in states]
    if missing:
        out = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(missing),
                    "-o", "JobID,State,Elapsed,NNodes,NodeList"])
        for line in (out or "").splitlines():
            jid, state, elapsed, nodes, where = (line.split("|") + [""] * 5)[:5]
            if jid in missing:
                states[jid] = {"state": state.split()[0], "time": elapsed, "nodes": nodes, "where": where,
                               "source": "sacct"}
    return states


def no_client_note(entries: list[dict[str, Any]]) -> str | None:
    if entries and "SLURM_CONF" not in os.environ and shutil.which("squeue") is None:
        return "no Slurm client here: states come from the run directories"
    return None


def cancel(run_dir: Path) -> str | None:
    """``scancel`` the Slurm job this run directory records (None: it records none)."""
    info_path = Path(run_dir) / JOB_INFO_NAME
    job_id = json.loads(info_path.read_text()).get("job_id") if info_path.is_file() else None
    if not job_id:
        return None
    if shutil.which("scancel") is None:
        return f"Slurm job {job_id}: no scancel on this host; run `scancel {job_id}` where Slurm is"
    proc = subprocess.run(["scancel", str(job_id)], check=False, capture_output=True, text=True)
    return f"Slurm job {job_id}: " + ("cancel requested" if proc.returncode == 0
                                      else f"scancel failed: {proc.stderr.strip()}")


# --- job side: called by the batch script ----------------------------------------------------------------


def _job_info_path(run_dir: Path) -> Path:
    return run_dir / JOB_INFO_NAME


def job_start(run_dir: Path) -> None:
    """Mark the run RUNNING under this job; fold the marker of an earlier preemption into the history."""
    from tuneforge.rundir import atomic_write_json

    info_path = _job_info_path(run_dir)
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info.setdefault("first_start_unix", time.time())
    info.update(job_id=os.environ.get("SLURM_JOB_ID"),
                restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0")),
                nodelist=os.environ.get("SLURM_JOB_NODELIST"), nnodes=os.environ.get("SLURM_NNODES"),
                last_start=datetime.now().isoformat(timespec="seconds"))
    preempted = run_dir / PREEMPTED
    if preempted.is_file():
        info.setdefault("preemptions", []).append(json.loads(preempted.read_text() or "{}"))
        preempted.unlink()
    atomic_write_json(info_path, info)
    mark_started(run_dir, f"slurm job {info['job_id']} (restart {info['restarts']}) on {info['nodelist']}")


def requeue(job_id: str) -> bool:
    proc = subprocess.run(["scontrol", "requeue", job_id], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"tuneforge: scontrol requeue {job_id} failed: {proc.stderr.strip()}", file=sys.stderr)
    return proc.returncode == 0


def job_end(run_dir: Path, rc: int) -> int:
    from tuneforge.rundir import read_config

    job_id = os.environ.get("SLURM_JOB_ID", "?")
    preempted = run_dir / PREEMPTED
    if preempted.is_file():
        marker = json.loads(preempted.read_text() or "{}")
        print(f"tuneforge: preempted at step {marker.get('step')} with a complete checkpoint "
              f"({marker.get('checkpoint')}); requeueing job {job_id}", flush=True)
        if requeue(job_id):
            time.sleep(60)  # Slurm kills this shell while it requeues the job; do not report an ending
            return 0
        (run_dir / FAILED).write_text(f"preempted at step {marker.get('step')} and the requeue failed; "
                                      f"resubmit to resume: sbatch {run_dir / SCRIPT_NAME}\n")
        (run_dir / RUNNING).unlink(missing_ok=True)
        return 1
    logs = f"; node logs: {run_dir / 'logs'}/"
    if rc != 0:
        mark_failed(run_dir, f"slurm job {job_id}", f"srun exited with status {rc}", hint=logs)
        return rc
    info_path = _job_info_path(run_dir)
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    # the same fields as tuneforge.train.train writes, plus where and how often the job ran
    return finish_from_workers(read_config(run_dir), run_dir, f"slurm job {job_id}",
                               time.time() - info.get("first_start_unix", time.time()), hint=logs,
                               slurm_job_id=job_id, slurm_restarts=info.get("restarts", 0),
                               preemptions=info.get("preemptions", []))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("job-start", "job-end"):
        print("usage: python -m tuneforge.launch.slurm_job job-start <run_dir> | job-end <run_dir> <srun status>",
              file=sys.stderr)
        return 2
    run_dir = Path(argv[1]).resolve()
    if argv[0] == "job-start":
        job_start(run_dir)
        return 0
    return job_end(run_dir, int(argv[2]) if len(argv) > 2 else 0)


if __name__ == "__main__":
    sys.exit(main())
