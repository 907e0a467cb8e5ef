"""The venv's own `axolotl` command works on the axolotl.yaml tuneforge emits (`axolotl preprocess`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.axolotl
def test_axolotl_preprocess_accepts_the_emitted_yaml(tmp_path: Path) -> None:
    from datasets import load_from_disk

    from tuneforge.config.compose import load_run_config
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.models import build_tiny_model

    axolotl = Path(sys.executable).parent / "axolotl"
    assert axolotl.exists() or shutil.which("axolotl"), "the venv has no axolotl console script"
    run_dir = tmp_path / "run"
    overrides = ["recipe=lora-tiny", "backend=axolotl", f"run_dir={run_dir}"]
    run = load_run_config(overrides)
    build_tiny_model(run.model.tiny)  # the plan names the cached model and splits; make them exist
    prepare_splits(run.dataset)
    plan_dir = tmp_path / "plan"
    proc = subprocess.run([sys.executable, "-m", "tuneforge.cli", "plan", *overrides, "--out", str(plan_dir)],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(axolotl if axolotl.exists() else "axolotl"), "preprocess",
                           str(plan_dir / "axolotl.yaml")], capture_output=True, text=True, check=False, env=env,
                          cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "ModuleNotFoundError" not in proc.stderr
    prepared = [p for p in (run_dir / "axolotl_prepared").iterdir() if (p / "dataset_info.json").is_file()]
    assert prepared, "axolotl wrote no prepared dataset"
    rows = load_from_disk(str(prepared[0]))
    assert len(rows) > 100
    labels = rows[0]["labels"]
    # train_on_inputs=false: the prompt is masked (-100), the answer is trained
    assert -100 in labels and any(t != -100 for t in labels)
