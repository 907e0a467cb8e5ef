"""Real jobs on a real (local, one-node) Slurm: a tiny training through launcher=slurm with accelerate inside
srun, Slurm's own refusal of a bad partition, and preemption -> checkpoint -> requeue -> resume."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import read_metrics
from tests.slurm.polling import wait_for
from tuneforge.config.compose import load_run_config
from tuneforge.errors import LaunchError
from tuneforge.job_index import read_index
from tuneforge.jobs import cmd_jobs
from tuneforge.train import train

pytestmark = pytest.mark.slurm


def _overrides(out_root: Path, *extra: str) -> list[str]:
    return ["recipe=lora-tiny", "launcher=slurm", f"output_root={out_root}", "launcher.time=10:00",
            "launcher.signal_seconds=60", *extra]


def _loss_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if "loss" in r and "eval_loss" not in r]


def test_train_through_slurm(slurm_cluster: str, out_root: Path, capsys: pytest.CaptureFixture) -> None:
    run = load_run_config(_overrides(out_root, "hparams.max_steps=6", "launcher.wait=true",
                                     "eval.after_training=true", "eval.max_samples=2", "eval.max_new_tokens=4"))
    summary = train(run, quiet=True)
    run_dir = Path(summary["run_dir"])
    job_id = summary["slurm_job_id"]
    # the job finished its own run directory: summary.json, weights, metrics; the script is kept
    assert summary["launcher"] == "slurm" and summary["steps"] == 6
    assert (run_dir / "summary.json").is_file() and not (run_dir / "RUNNING").exists()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert _loss_steps(run_dir) == list(range(1, 7))
    assert summary["eval_loss"] is not None
    assert "#SBATCH --nodes=1" in (run_dir / "job.sbatch").read_text()
    # eval.after_training ran on the job's side, through the same finish_run as a local run
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["n_examples"] == 2 and (run_dir / "report.md").is_file()
    # each node's log lands in the run directory; the worker ran under accelerate inside srun
    node_log = (run_dir / "logs" / f"node0-{job_id}.out").read_text()
    assert '"rank": "0"' in node_log and '"steps": 6' in node_log
    assert "tuneforge run complete" in (run_dir / "logs" / f"slurm-{job_id}.out").read_text()
    # the jobs index and `tuneforge jobs`
    assert [e["job_id"] for e in read_index(out_root)] == [job_id]
    capsys.readouterr()
    assert cmd_jobs([f"output_root={out_root}"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(job_id + " "))
    assert "COMPLETED" in line and str(run_dir) in line


def test_unknown_partition_is_slurms_refusal(slurm_cluster: str, out_root: Path) -> None:
    run = load_run_config(_overrides(out_root, "launcher.partition=no-such-partition"))
    with pytest.raises(LaunchError) as err:
        train(run, quiet=True)
    msg = str(err.value)
    assert "Slurm refused the job" in msg and "invalid partition" in msg.lower(), msg
    run_dir = next((out_root / "lora-tiny").iterdir())
    assert (run_dir / "FAILED").is_file() and not (run_dir / "summary.json").exists()
    assert read_index(out_root) == []


def test_preempted_job_checkpoints_requeues_and_resumes(slurm_cluster: str, out_root: Path) -> None:
    max_steps = 120
    run = load_run_config(_overrides(out_root, f"hparams.max_steps={max_steps}", "hparams.eval_steps=null"))
    submitted = train(run, quiet=True)
    assert submitted["submitted"] is True
    job_id, run_dir = submitted["slurm_job_id"], Path(submitted["run_dir"])
    metrics = run_dir / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and any("loss" in json.loads(ln) for ln in metrics.read_text().splitlines()),
             180, "the first training steps")
    # what Slurm sends `launcher.signal_seconds` before the time limit, sent now
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True)
    wait_for(lambda: (run_dir / "summary.json").is_file() or (run_dir / "FAILED").is_file(), 300,
             "the requeued job to finish")
    assert not (run_dir / "FAILED").exists(), (run_dir / "FAILED").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    (preemption,) = summary["preemptions"]
    step = preemption["step"]
    assert 1 <= step < max_steps, f"the signal came too late to test a resume (checkpoint at step {step})"
    assert summary["slurm_restarts"] == 1 and summary["steps"] == max_steps
    # resumed, not restarted: every step trained exactly once, the second job starting after the checkpoint
    assert _loss_steps(run_dir) == list(range(1, max_steps + 1))
    assert Path(preemption["checkpoint"]).name == f"checkpoint-{step}"
    node_log = (run_dir / "logs" / f"node0-{job_id}.out").read_text()
    assert "got SIGUSR1" in node_log and f"checkpoint-{step} saved" in node_log
    batch_log = (run_dir / "logs" / f"slurm-{job_id}.out").read_text()
    assert f"preempted at step {step}" in batch_log and "(restart 1)" in batch_log
