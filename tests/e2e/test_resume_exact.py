"""Issue 12 §3: resume is exact, and so is its bookkeeping (tiny model, CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import read_metrics
from tuneforge.config.compose import load_run_config
from tuneforge.train import train

COMMON = ["recipe=lora-tiny", "dataset=sample-chat", "hparams.save_steps=2", "hparams.eval_steps=null",
          "optim.scheduler=constant", "hparams.logging_steps=1"]


def _train(run_dir: Path, steps: int) -> dict:
    return train(load_run_config([*COMMON, f"run_dir={run_dir}", f"hparams.max_steps={steps}"]), quiet=True)


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def _train_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if r.get("event") == "train"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] - b[k]).abs().max().item() < 1e-6 for k in a)


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = _train(tmp_path / "whole", 4)
    _train(tmp_path / "parts", 2)
    resumed = _train(tmp_path / "parts", 4)  # the same run, trained further: resumes from checkpoint-2
    parts = tmp_path / "parts"
    assert resumed["steps"] == 4 and resumed["resumed_from"] == "checkpoint-2"
    # the mean loss is over the whole run, not the resumed half divided by every step
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], abs=2e-3)
    assert _train_steps(parts) == [1, 2, 3, 4], "no step logged twice"
    assert [r for r in read_metrics(parts) if r.get("event") == "resume"][0]["checkpoint"] == "checkpoint-2"
    # same config + seed => same adapter init and the same losses, step for step; resume is bit-exact
    losses = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "whole") if r.get("event") == "train"}
    assert {r["step"]: r["loss"] for r in read_metrics(parts) if r.get("event") == "train"} == \
        pytest.approx(losses, abs=1e-4)
    assert _same(_weights(parts), _weights(tmp_path / "whole"))
    assert losses[4] < losses[1]


@pytest.mark.slow
def test_a_finished_training_whose_save_was_killed_redoes_only_the_save(tmp_path: Path) -> None:
    d = tmp_path / "run"
    first = _train(d, 4)
    final = _weights(d)
    # what a SIGKILL during the final weight save leaves: checkpoint-4 complete, no adapter, no summary
    shutil.rmtree(d / "adapter")
    (d / "summary.json").unlink()
    (d / "FAILED").write_text("killed\n")
    again = _train(d, 4)
    assert again["steps"] == 4 and again["resumed_from"] == "checkpoint-4", "no 5th step"
    assert _train_steps(d) == [1, 2, 3, 4]
    assert _same(_weights(d), final)
    assert again["train_loss"] == pytest.approx(first["train_loss"], abs=2e-3)
    assert not (d / "FAILED").exists() and json.loads((d / "summary.json").read_text())["steps"] == 4

    # torn weights in the newest checkpoint (its trainer_state.json intact): the previous one is chosen
    w = d / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[:-64])
    shutil.rmtree(d / "adapter")
    (d / "summary.json").unlink()
    third = _train(d, 4)
    assert third["resumed_from"] == "checkpoint-2" and third["steps"] == 4
    assert _train_steps(d) == [1, 2, 3, 4]
    assert _same(_weights(d), final)
