"""Checkpoint-on-signal without Slurm: the worker saves a complete checkpoint on SIGUSR1 and exits for a
requeue; a second start resumes from it. Only complete checkpoints are ever resumed from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import read_metrics
from tests.slurm.polling import wait_for
from tuneforge.config.compose import load_run_config
from tuneforge.preemption import MARKER, PREEMPTED_EXIT_CODE, latest_complete_checkpoint
from tuneforge.rundir import new_run_dir, write_config


def test_latest_complete_checkpoint_skips_half_written(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    assert latest_complete_checkpoint(ckpt) is None
    for step, state in ((5, '{"global_step": 5}'), (10, '{"global_st'), (15, None), (7, '{"global_step": 7}')):
        d = ckpt / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    (ckpt / "checkpoint-x").mkdir()
    assert latest_complete_checkpoint(ckpt) == str(ckpt / "checkpoint-7")


@pytest.mark.slow
def test_worker_checkpoints_on_signal_and_resumes(out_root: Path) -> None:
    max_steps = 150
    run = load_run_config(["recipe=lora-tiny", f"output_root={out_root}", f"hparams.max_steps={max_steps}",
                           "hparams.eval_steps=null"])
    run_dir = new_run_dir(run)
    write_config(run, run_dir)
    env = {**os.environ, "TUNEFORGE_PREEMPTION": "1"}
    cmd = [sys.executable, "-m", "tuneforge.worker", str(run_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and "loss" in metrics.read_text(), 120, "the first training steps")
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-2000:]
    marker = json.loads((run_dir / MARKER).read_text())
    step = marker["step"]
    assert 1 <= step < max_steps
    assert latest_complete_checkpoint(run_dir / "checkpoints") == marker["checkpoint"]
    assert not (run_dir / "worker_result.json").exists()
    (run_dir / MARKER).unlink()  # what the requeued job's job-start does
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run_dir / "worker_result.json").read_text())["steps"] == max_steps
    steps = [r["step"] for r in read_metrics(run_dir) if "loss" in r and "eval_loss" not in r]
    assert steps == list(range(1, max_steps + 1))
