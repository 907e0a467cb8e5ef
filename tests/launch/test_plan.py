"""`plan`: shows and writes every file a launch uses, imports no torch, and the run writes the same files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.backends.registry import get_backend
from tuneforge.config.compose import load_run_config
from tuneforge.launch.registry import get_launcher
from tuneforge.plan import make_plan

TWO_NODES = ["recipe=full-llama", "backend=axolotl", "launcher=accelerate", "launcher.gpus_per_node=8",
             "launcher.num_nodes=2", "launcher.main_process_ip=10.0.0.1", "distributed=zero3",
             "run_dir=/shared/runs/full", "launcher.gpu_memory_gb=10"]


def test_plan_cli_writes_everything_without_torch(tmp_path: Path) -> None:
    code = ("import sys, time; t = time.perf_counter(); from tuneforge.cli import main; "
            f"rc = main(['plan', *{TWO_NODES!r}, '--out', {str(tmp_path)!r}]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH', round(time.perf_counter() - t, 3)); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "NO_TORCH" in proc.stdout
    names = {p.name for p in tmp_path.iterdir()}
    assert {"plan.txt", "config.yaml", "axolotl.yaml", "ds_config.json", "accelerate.yaml", "launch.sh",
            "commands.sh", "memory_estimate.json"} <= names
    text = proc.stdout
    assert "--machine_rank 0 -m axolotl.cli.train /shared/runs/full/axolotl.yaml" in text
    assert "--machine_rank 1 -m axolotl.cli.train /shared/runs/full/axolotl.yaml" in text
    assert "# memory estimate per GPU" in text and "exceeds launcher.gpu_memory_gb=10" in text
    memory = json.loads((tmp_path / "memory_estimate.json").read_text())
    assert memory["processes"] == 16 and memory["per_gpu_gib"] > 10


def test_plan_redacts_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "sk-very-secret-value-123")
    plan = make_plan(load_run_config(["recipe=lora-tiny", "launcher=accelerate",
                                      "+launcher.env.WANDB_API_KEY=sk-very-secret-value-123"]))
    text = plan.render()
    assert "sk-very-secret-value-123" not in text and "REDACTED" in text


def test_run_writes_exactly_the_planned_launcher_files(tmp_path: Path) -> None:
    run = load_run_config(["recipe=lora-llama", "launcher=accelerate", "launcher.gpus_per_node=4",
                           "distributed=zero3", f"run_dir={tmp_path}"])
    plan = make_plan(run, tmp_path)
    written = get_launcher("accelerate").prepare(run, tmp_path, get_backend("native"), validate=False)
    for name in ("accelerate.yaml", "ds_config.json", "launch.sh"):
        assert written[name].read_text() == plan.artifacts[name], name
