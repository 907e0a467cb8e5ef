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
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.job_index import index_path, read_index


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout if proc.returncode == 0 else None


def slurm_states(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """job id -> {state, time, nodes, where}: squeue for jobs Slurm still holds, sacct for older ones."""
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


def run_dir_state(run_dir: Path) -> str:
    """The state a run directory records, for jobs Slurm no longer lists."""
    if (run_dir / "summary.json").is_file():
        return "COMPLETED"
    if (run_dir / "FAILED").is_file():
        return "FAILED"
    if (run_dir / "PREEMPTED").is_file():
        return "PREEMPTED"
    if (run_dir / "RUNNING").is_file():
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


def job_rows(output_root: Path) -> list[dict[str, Any]]:
    entries = read_index(output_root)
    states = slurm_states([e["job_id"] for e in entries if e.get("kind") not in ("openai", "ray")])
    if any(e.get("kind") == "ray" for e in entries):
        from tuneforge.launch.ray import job_states

        states.update(job_states([e for e in entries if e.get("kind") == "ray"]))
    rows = []
    for e in entries:
        run_dir = Path(e["run_dir"])
        s = states.get(e["job_id"]) if e.get("kind") != "openai" else hosted_state(run_dir)
        rows.append({
            "job_id": e["job_id"],
            "state": s["state"] if s else run_dir_state(run_dir),
            "source": s["source"] if s else "run dir",
            "time": s["time"] if s else "",
            "nodes": (s["nodes"] if s else "") or str(e.get("nodes", "")),
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
    slurm = any(r["kind"] not in ("openai", "ray") for r in rows)
    if slurm and "SLURM_CONF" not in os.environ and shutil.which("squeue") is None:
        print("(no Slurm client here: states come from the run directories)", file=sys.stderr)
    return 0


def hosted_state(run_dir: Path) -> dict[str, str]:
    """An OpenAI job's state (asks the API; job.json when it cannot be reached) in the row's fields."""
    from tuneforge.backends.openai_job import job_state

    s = job_state(run_dir)
    return {"state": s["state"], "source": s["source"], "time": "", "nodes": "",
            "fine_tuned_model": s.get("fine_tuned_model") or ""}


def cmd_cancel(args: list[str]) -> int:
    """tuneforge cancel run=<run_dir>: cancel the run's OpenAI fine-tuning job or stop its Ray job (Slurm jobs:
    scancel <id>)."""
    from tuneforge.backends.openai_job import cancel_run, read_job
    from tuneforge.launch.ray import read_job_info, stop_job

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
    ray_job = read_job_info(run_dir).get("job_id")
    if ray_job:
        print(f"Ray job {ray_job}: {stop_job(run_dir)}")
        return 0
    if not read_job(run_dir).get("job_id"):
        raise ConfigError(f"tuneforge cancel: {run_dir} records no hosted job (no job.json with a job_id); "
                          "a Slurm job is cancelled with scancel <job id> (tuneforge jobs lists them)")
    job = cancel_run(run_dir)
    print(f"OpenAI job {job.id}: {job.status}")
    return 0
