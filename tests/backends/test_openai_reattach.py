"""Issue 26: re-attaching to an OpenAI job that no longer exists fails clearly (follow=false and true, no
"keeps running" claim), and the summary's mean training loss is the mean over the steps, not the last one.
The official SDK talks to the local stand-in (tuneforge.openai_standin); nothing of tuneforge's is replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backends.test_openai import args, only_run, standin  # noqa: F401  (the stand-in fixture)
from tuneforge.cli import main
from tuneforge.openai_standin import StandIn


@pytest.mark.parametrize("follow", ["false", "true"])
def test_reattach_to_a_job_that_is_gone_fails_clearly(standin: StandIn, tmp_path: Path,  # noqa: F811
                                                      capsys: pytest.CaptureFixture, follow: str) -> None:
    out = tmp_path / "outputs"
    assert main(["train", *args(out, "backend.follow=false")]) == 0
    run_dir = only_run(out)
    job_id = json.loads((run_dir / "job.json").read_text())["job_id"]
    standin.jobs.clear()  # deleted on the server (or the key now belongs to another account)
    capsys.readouterr()
    assert main(["train", *args(out, f"run_dir={run_dir}", f"backend.follow={follow}")]) == 2
    err = capsys.readouterr().err
    assert f"OpenAI job {job_id}" in err and "does not exist" in err and "404" in err
    assert "keeps running" not in err and not (run_dir / "summary.json").exists()


def test_summary_mean_loss_is_the_mean_over_steps(standin: StandIn, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "outputs"
    assert main(["train", *args(out)]) == 0
    run_dir = only_run(out)
    losses = [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").open()) if r.get("loss") is not None]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(losses) > 2 and summary["last_loss"] == losses[-1]
    assert summary["train_loss"] == pytest.approx(sum(losses) / len(losses)) != losses[-1]
