"""Real multi-process data parallel on CPU (gloo), through the accelerate launcher and the native backend.

- 2 processes on one node: `accelerate launch` with distributed_type MULTI_GPU + ACCELERATE_USE_CPU=true.
- 2 "nodes" on localhost: two `tuneforge train` processes, launcher.node_rank=0 and 1, one shared run_dir,
  rendezvous at 127.0.0.1.
Each rank writes ranks/rank-<k>.json (steps, ids of the sequences it trained on, SHA-256 of its trainable
weights): both ranks ran the same steps, saw disjoint shards, and ended with identical weights.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import read_metrics
from tuneforge.config.compose import load_run_config
from tuneforge.train import train

pytestmark = pytest.mark.distributed

STEPS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_data_parallel(run_dir: Path, world: int) -> None:
    records = [json.loads((run_dir / "ranks" / f"rank-{k}.json").read_text()) for k in range(world)]
    assert sorted(r["rank"] for r in records) == list(range(world))
    assert all(r["world_size"] == world and r["backend"] == "gloo" for r in records)
    assert {r["steps"] for r in records} == {STEPS}
    micro = 4
    for r in records:
        assert len(r["sample_ids"]) == STEPS * micro  # every rank trained every step
    shards = [set(r["sample_ids"]) for r in records]
    assert not shards[0] & shards[1], "both ranks trained on the same sequences: the data was not sharded"
    assert len({r["trainable_weights_sha256"] for r in records}) == 1, "ranks ended with different weights"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    losses = [r["loss"] for r in read_metrics(run_dir) if "loss" in r]
    assert len(losses) == STEPS


def test_two_processes_on_cpu(out_root: Path) -> None:
    run = load_run_config(["recipe=lora-tiny", f"output_root={out_root}", "launcher=accelerate",
                           "launcher.gpus_per_node=2", "launcher.cpu=true", f"launcher.main_process_port={_free_port()}",
                           f"hparams.max_steps={STEPS}", "hparams.eval_steps=null"])
    summary = train(run, quiet=True)
    run_dir = Path(summary["run_dir"])
    assert summary["world_size"] == 2 and summary["steps"] == STEPS
    _assert_data_parallel(run_dir, 2)
    assert (run_dir / "accelerate.yaml").is_file() and (run_dir / "plan.txt").is_file()
    assert (run_dir / "summary.json").is_file()


@pytest.mark.slow
def test_two_nodes_rendezvous_on_localhost(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    port = _free_port()
    common = ["recipe=lora-tiny", f"run_dir={run_dir}", f"output_root={tmp_path}", "launcher=accelerate",
              "launcher.gpus_per_node=1", "launcher.num_nodes=2", "launcher.cpu=true",
              "launcher.main_process_ip=127.0.0.1", f"launcher.main_process_port={port}",
              f"hparams.max_steps={STEPS}", "hparams.eval_steps=null"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "train", *common, f"launcher.node_rank={k}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for k in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for k, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"node {k} failed:\n{out[-3000:]}"
    commands = (run_dir / "plan.txt").read_text()
    assert "--machine_rank 0" in commands and "--machine_rank 1" in commands
    _assert_data_parallel(run_dir, 2)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["launcher"] == "accelerate"


@pytest.mark.slow
def test_two_process_cpu_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A 2-rank CPU run stopped after a checkpoint continues from it (optimizer state restored on CPU ranks)."""
    run_dir = tmp_path / "run"
    common = ["recipe=lora-tiny", f"run_dir={run_dir}", f"output_root={tmp_path}", "launcher=accelerate",
              "launcher.gpus_per_node=2", "launcher.cpu=true", "hparams.eval_steps=null", "hparams.save_steps=3"]
    train(load_run_config([*common, "hparams.max_steps=3", f"launcher.main_process_port={_free_port()}"]),
          quiet=True)
    assert (run_dir / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()
    summary = train(load_run_config([*common, "hparams.max_steps=6",
                                     f"launcher.main_process_port={_free_port()}"]), quiet=True)
    assert summary["steps"] == 6
    steps = [r["step"] for r in read_metrics(run_dir) if "loss" in r]
    # the second launch logged steps 4..6 only: it resumed rather than starting over
    assert steps[-3:] == [4, 5, 6] and steps.count(1) == 1
