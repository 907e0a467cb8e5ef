"""``tuneforge jobs``: the runs submitted to Slurm or Ray (and hosted jobs), with their state and run directory.

Every submission (``launcher=slurm`` and ``launcher=ray`` jobs, sweep trials running under submitit, hosted
jobs) appends one line to ``<output_root>/jobs.jsonl``. The listing asks Slurm for the state of all of its
jobs in one ``squeue`` call, then ``sacct`` where accounting exists; Ray jobs are asked of their cluster's job
API (states mapped to the same words: SUCCEEDED -> COMPLETED, STOPPED -> CANCELLED); otherwise it reads the
run directory (summary.json = completed, FAILED = failed), since a cluster forgets finished jobs.

    tuneforge jobs                       (reads ./outputs/jobs.jsonl)
    tuneforge jobs output_root=/scratch/me/outputs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.job_index import index_path, read_index
from tuneforge.rundir import FAILED, PREEMPTED, RUNNING, SUMMARY
from tuneforge.schema.components import JobTracker

# entries of the jobs index that name no tracker are Slurm's (launcher=slurm jobs and sweep trials)
SLURM_TRACKER = "slurm"


def run_dir_state(run_dir: Path) -> str:
    """The state a run directory records, for jobs Slurm no longer lists."""
    if (run_dir / SUMMARY).is_file():
        return "COMPLETED"
    if (run_dir / FAILED).is_file():
        return "FAILED"
    if (run_dir / PREEMPTED).is_file():
        return "PREEMPTED"
    if (run_dir / RUNNING).is_file():
        return "INCOMPLETE"  # Slurm has forgotten the job and it never finished its run directory
    return "UNKNOWN" if run_dir.is_dir() else "MISSING"


def last_step(run_dir: Path) -> int | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    step = None
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        for line in f.read().splitlines():
            try:
                step = json.loads(line).get("step", step)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
    return step


def tracker(entry: dict[str, Any]) -> JobTracker:
    """Who answers for a jobs-index entry: the launcher or hosted backend named by its ``tracker`` (entries
    written before that field name it by ``kind``; Slurm's are "train" and "sweep-trial")."""
    from tuneforge.backends.registry import BACKENDS, get_backend
    from tuneforge.launch.registry import LAUNCHERS, get_launcher

    name = entry.get("tracker") or entry.get("kind", "")
    if name in LAUNCHERS:
        return get_launcher(name)
    if name in BACKENDS:
        return get_backend(name)
    return get_launcher(SLURM_TRACKER)


def job_rows(output_root: Path) -> list[dict[str, Any]]:
    entries = read_index(output_root)
    by_tracker: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_tracker.setdefault(tracker(e).name, []).append(e)
    states: dict[str, dict[str, str]] = {}
    for group in by_tracker.values():
        states.update(tracker(group[0]).job_states(group))
    rows = []
    for e in entries:
        run_dir = Path(e["run_dir"])
        s = states.get(e["job_id"])
        rows.append({
            "job_id": e["job_id"],
            "state": s["state"] if s else run_dir_state(run_dir),
            "source": s["source"] if s else "run dir",
            "time": s.get("time", "") if s else "",
            "nodes": (s.get("nodes", "") if s else "") or str(e.get("nodes", "")),
            "step": last_step(run_dir),
            "name": e.get("name", ""),
            "kind": e.get("kind", ""),
            "submitted": e.get("submitted", ""),
            "model": (s or {}).get("fine_tuned_model") or "",
            "run_dir": str(run_dir),
        })
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    cols = [("JOB", "job_id"), ("STATE", "state"), ("FROM", "source"), ("TIME", "time"), ("NODES", "nodes"),
            ("STEP", "step"), ("KIND", "kind"), ("NAME", "name"), ("SUBMITTED", "submitted"),
            ("RUN DIR", "run_dir")]
    if any(r.get("model") for r in rows):  # hosted jobs: the fine-tuned model's id
        cols.insert(-1, ("FINE-TUNED MODEL", "model"))
    table = [[h for h, _ in cols]] + [["" if r[k] is None else str(r[k]) for _, k in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
                     for row in table)


def cmd_jobs(args: list[str]) -> int:
    output_root = Path("outputs")
    for a in args:
        key, sep, value = a.partition("=")
        if key == "output_root" and sep:
            output_root = Path(value)
        else:
            raise ConfigError(f"tuneforge jobs: unknown argument '{a}'; valid: output_root=<dir>")
    rows = job_rows(output_root)
    if not rows:
        print(f"no submitted jobs recorded in {index_path(output_root)}")
        return 0
    print(format_rows(rows))
    slurm = [e for e in read_index(output_root) if tracker(e).name == SLURM_TRACKER]
    if slurm:
        from tuneforge.launch.slurm_job import no_client_note

        note = no_client_note(slurm)
        if note:
            print(f"({note})", file=sys.stderr)
    return 0


def cmd_cancel(args: list[str]) -> int:
    """tuneforge cancel run=<run_dir>: cancel the job the run directory records, asking whoever submitted it
    (the run's hosted backend, its launcher, or the tracker of its jobs-index entry: Slurm, Ray, OpenAI)."""
    from tuneforge.backends.registry import BACKENDS, get_backend
    from tuneforge.launch.registry import LAUNCHERS, get_launcher
    from tuneforge.rundir import read_config

    run_dir = None
    for a in args:
        key, sep, value = a.partition("=")
        if key == "run" and sep:
            run_dir = Path(value)
        else:
            raise ConfigError(f"tuneforge cancel: unknown argument '{a}'; valid: run=<run_dir>")
    if run_dir is None:
        raise ConfigError("tuneforge cancel: run=<run_dir> is required, e.g. tuneforge cancel "
                          "run=outputs/openai-gpt4o-mini/<timestamp>")
    candidates: list[JobTracker] = []
    if (run_dir / "config.yaml").is_file():
        run = read_config(run_dir)
        if run.backend.name in BACKENDS:
            candidates.append(get_backend(run.backend.name))
        if run.launcher.name in LAUNCHERS:
            candidates.append(get_launcher(run.launcher.name))
    candidates.append(get_launcher(SLURM_TRACKER))  # a sweep trial runs locally inside a Slurm job
    for c in candidates:
        said = c.cancel(run_dir)
        if said is not None:
            print(said)
            return 0
    raise ConfigError(f"tuneforge cancel: {run_dir} records no submitted job (no Ray, Slurm or hosted job id); "
                      "`tuneforge jobs` lists the submitted ones")
