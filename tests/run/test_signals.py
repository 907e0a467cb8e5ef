"""Issue 26: a signal that stops a local run (SIGTERM from kill/systemd/a container stop, SIGINT from Ctrl-C,
SIGHUP from a closed terminal) is a preemption everywhere, with no TUNEFORGE_PREEMPTION=1: the trainer saves a
checkpoint, the run is marked INTERRUPTED (not FAILED, no RUNNING left), the message says how to resume, and
the same command resumes from that checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuneforge.runs import run_status

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT,
                                 pytest.param(signal.SIGHUP, marks=pytest.mark.slow)], ids=lambda s: s.name)
def test_a_signal_checkpoints_marks_interrupted_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    run_dir = tmp_path / "run"
    args = ["recipe=lora-tiny", f"run_dir={run_dir}", "hparams.eval_steps=null", "hparams.logging_steps=1"]
    env = {k: v for k, v in os.environ.items() if k != "TUNEFORGE_PREEMPTION"}
    env["PYTHONPATH"] = str(REPO / "src")
    # the signal's default in the child: a suite started in the background has SIGINT ignored, and an ignored
    # signal stays ignored (test_an_ignored_signal_stays_ignored)
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "train", *args, "hparams.max_steps=100000"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err
    marker = json.loads((run_dir / "INTERRUPTED").read_text())
    assert marker["signal"] == sig.name and Path(marker["checkpoint"]).is_dir()
    assert not (run_dir / "FAILED").exists() and not (run_dir / "RUNNING").exists()
    assert run_status(run_dir) == "interrupted"
    assert f"resume: tuneforge train <same arguments> run_dir={run_dir}" in err
    step = marker["step"]
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    summary = train(load_run_config([*args, f"hparams.max_steps={step + 2}"]), quiet=True)
    assert summary["resumed_from"] == f"checkpoint-{step}" and summary["steps"] == step + 2
    assert run_status(run_dir) == "complete" and not (run_dir / "INTERRUPTED").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the in-process run put the handlers back


def test_an_ignored_signal_stays_ignored(tmp_path: Path) -> None:
    """nohup ignores SIGHUP and a shell's background job ignores SIGINT: training keeps that choice (the
    hosted-job follower does the same), and puts back what it replaced when it ends."""
    from tuneforge.preemption import PreemptionCallback, restore_signal_handlers

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # the Slurm job script ignores SIGUSR1 so that accelerate survives it: the trainer must still take it
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        cb = PreemptionCallback(tmp_path, (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1))
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == cb._on_signal
        assert signal.getsignal(signal.SIGUSR1) == cb._on_signal
        restore_signal_handlers()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    finally:
        restore_signal_handlers()
        for s, h in before.items():
            signal.signal(s, h)
