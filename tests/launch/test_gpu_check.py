"""The GPU proof's CPU half: the random-init path (model.init=random) trains and is refused by eval, and
`bench/gpu_check.py --dry-run` composes and plans every step of the GPU check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError, ModelLoadError, RunArtifactError
from tuneforge.paths import project_root


def test_a_random_init_model_of_the_tiny_shape_trains_and_eval_refuses_it(tmp_path: Path) -> None:
    from tuneforge.evaluation.artifacts import open_run
    from tuneforge.models import random_model_dir, resolve_model_path
    from tuneforge.train import train

    run = load_run_config(["recipe=lora-tiny", "model.init=random", f"output_root={tmp_path}",
                           "hparams.max_steps=12", "optim.lr=3e-2", "dataset=sample-chat"])
    summary = train(run, quiet=True)
    assert summary["steps"] == 12 and summary["last_loss"] < summary["first_loss"]
    path = Path(resolve_model_path(run.model))
    assert path == random_model_dir(run.model)
    config = json.loads((path / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (run.model.tiny.hidden_size,
                                                                   run.model.tiny.num_hidden_layers)
    assert json.loads((path / "SOURCE.json").read_text())["init"] == "random"
    with pytest.raises(RunArtifactError, match="random weights"):
        open_run(Path(summary["run_dir"]))


def test_random_init_names_the_known_shapes_and_the_valid_values() -> None:
    from tuneforge.models import random_model_shape

    with pytest.raises(ModelLoadError, match="meta-llama/Llama-3.1-8B"):
        random_model_shape(load_run_config(["recipe=lora-llama", "model.name_or_path=acme/unknown-7b",
                                            "model.init=random"]).model)
    shape = random_model_shape(load_run_config(["recipe=lora-llama", "model.init=random"]).model)
    assert 8.0e9 < shape.num_parameters() < 8.1e9
    with pytest.raises(ConfigError, match="model.init='bogus' is not valid; choose one of: pretrained, random"):
        load_run_config(["model.init=bogus"])


def test_gpu_check_plans_every_step_and_says_it_needs_a_gpu() -> None:
    script = project_root() / "bench" / "gpu_check.py"
    dry = subprocess.run([sys.executable, str(script), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-2000:]
    for step in ("default-bf16", "qlora-8b", "lora-8b", "full-1b-zero2", "full-1b-zero3", "axolotl-default"):
        line = next(ln for ln in dry.stdout.splitlines() if ln.startswith(f"gpu-check {step}:"))
        row = json.loads(line.split(": ", 1)[1])
        assert row["plan_gib"] > 0 and row["flops_per_token"] > 0
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    import torch

    if not torch.cuda.is_available():
        assert plain.returncode == 0 and plain.stdout.strip().startswith("gpu-check: no CUDA device here")


@pytest.mark.gpu
def test_the_default_recipe_trains_in_bf16_on_a_gpu(tmp_path: Path) -> None:
    """On a CUDA machine (`pytest -m gpu`): the default step of the GPU check trains and reports its peak memory."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    script = project_root() / "bench" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--only", "default-bf16", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("gpu-check default-bf16:"))
    row = json.loads(line.split(": ", 1)[1])
    assert (row.get("peak_gib") or 0) > 0
