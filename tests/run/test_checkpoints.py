"""Issue 12 §3: a checkpoint is verified before a resume picks it; a torn one falls back to the previous one."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tuneforge.checkpoints import SEAL, checkpoint_problem, latest_complete_checkpoint, seal_checkpoint


def _checkpoint(root: Path, step: int) -> Path:
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    save_file({"w": torch.arange(1000, dtype=torch.float32) * step}, str(d / "adapter_model.safetensors"))
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return d


def test_torn_weights_with_an_intact_state_are_skipped(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    _checkpoint(ckpts, 30)
    torn = _checkpoint(ckpts, 60)
    weights = torn / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # the kill came during the weight write
    assert "torn" in checkpoint_problem(torn)
    assert latest_complete_checkpoint(ckpts) == str(ckpts / "checkpoint-30")


def test_a_sealed_checkpoint_is_checked_against_its_seal(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    _checkpoint(ckpts, 30)
    d = _checkpoint(ckpts, 60)
    (d / "optimizer.pt").write_bytes(b"x" * 64)
    seal_checkpoint(d)
    assert json.loads((d / SEAL).read_text())["files"]["optimizer.pt"] == 64
    assert latest_complete_checkpoint(ckpts) == str(d)
    (d / "optimizer.pt").write_bytes(b"x" * 10)  # not what was sealed
    assert "optimizer.pt" in checkpoint_problem(d)
    assert latest_complete_checkpoint(ckpts) == str(ckpts / "checkpoint-30")


def test_missing_or_truncated_state_is_skipped(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    _checkpoint(ckpts, 10)
    (_checkpoint(ckpts, 20) / "trainer_state.json").write_text('{"global_st')
    (ckpts / "checkpoint-30").mkdir()
    assert latest_complete_checkpoint(ckpts) == str(ckpts / "checkpoint-10")
    assert latest_complete_checkpoint(tmp_path / "none") is None
