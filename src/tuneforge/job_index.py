"""The jobs index, ``<output_root>/jobs.jsonl``: one line per submission (Slurm, Ray, OpenAI, sweep trials).

Written by whatever submits (launchers, the hosted backend, sweeps); read by ``tuneforge jobs``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

INDEX_NAME = "jobs.jsonl"


def index_path(output_root: Path) -> Path:
    return Path(output_root) / INDEX_NAME


def record_job(output_root: Path, *, job_id: str, run_dir: Path, name: str, kind: str, **extra: Any) -> None:
    """Append one submission: one short line per write, so concurrent writers (O_APPEND) never interleave."""
    rec = {"job_id": str(job_id), "run_dir": str(run_dir), "name": name, "kind": kind,
           "submitted": datetime.now().isoformat(timespec="seconds"), **extra}
    path = index_path(output_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def read_index(output_root: Path) -> list[dict[str, Any]]:
    path = index_path(output_root)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash; the others still count
    return out
