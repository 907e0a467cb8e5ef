"""`tuneforge jobs` without a cluster: states come from the run directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.errors import ConfigError
from tuneforge.job_index import record_job
from tuneforge.jobs import cmd_jobs, job_rows


def test_jobs_lists_index_with_run_dir_states(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no squeue/sacct here: the run directories tell
    done, failed = tmp_path / "a", tmp_path / "b"
    for d in (done, failed):
        d.mkdir()
    (done / "summary.json").write_text("{}")
    (done / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 7, "loss": 1.0}\n')
    (failed / "FAILED").write_text("srun exited with status 1\n")
    record_job(tmp_path, job_id="101", run_dir=done, name="lora-tiny", kind="train", nodes=2)
    record_job(tmp_path, job_id="102_3", run_dir=failed, name="lora-tiny", kind="sweep-trial")
    rows = job_rows(tmp_path)
    assert [(r["job_id"], r["state"], r["step"]) for r in rows] == [("101", "COMPLETED", 7), ("102_3", "FAILED", None)]
    assert cmd_jobs([f"output_root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "101" in out and str(done) in out and "FAILED" in out
    with pytest.raises(ConfigError, match="output_root"):
        cmd_jobs(["bogus=1"])
