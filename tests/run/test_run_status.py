"""Issue 26: a run is ``complete`` only when its summary.json is a whole run summary; a truncated, empty or
foreign one is listed as damaged, and ``run=latest`` never picks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.rundir import is_complete
from tuneforge.runs import find_runs, resolve_run

GOOD = {"name": "lora-tiny", "run_dir": "x", "backend": "native", "wall_time_s": 1.0, "train_loss": 1.2}


def _run(root: Path, stamp: str, summary: str) -> Path:
    d = root / "lora-tiny" / stamp
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("name: lora-tiny\nbackend: {name: native}\n")
    (d / "summary.json").write_text(summary)
    return d


@pytest.mark.parametrize("bad", [json.dumps(GOOD, indent=2)[:40], "", "[]", "null", json.dumps({"train_loss": 1})],
                         ids=["truncated", "empty", "a-list", "null", "not-a-summary"])
def test_a_broken_summary_is_not_complete(tmp_path: Path, bad: str) -> None:
    good = _run(tmp_path, "2026-01-01_00-00-00", json.dumps(GOOD))
    broken = _run(tmp_path, "2026-01-02_00-00-00", bad)
    statuses = {r.path: r.status for r in find_runs(tmp_path)}
    assert statuses == {good: "complete", broken: "damaged"}
    assert is_complete(good) and not is_complete(broken)
    assert resolve_run("latest", tmp_path) == good  # the newer, damaged one is never picked
