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


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    if how == "zeroed-middle":
        data[mid:mid + 16] = bytes(len(data[mid:mid + 16]))
    else:  # one flipped bit: the subtlest corruption of the same size
        data[mid] ^= 0x01
    path.write_bytes(bytes(data))


import pytest  # noqa: E402


@pytest.mark.parametrize("how", ["zeroed-middle", "one-bit"])
@pytest.mark.parametrize("name", ["optimizer.pt", "adapter_model.safetensors", "trainer_state.json"])
def test_corrupt_bytes_of_the_right_size_are_caught_by_the_seal(tmp_path: Path, name: str, how: str) -> None:
    ckpts = tmp_path / "checkpoints"
    seal_checkpoint(_checkpoint(ckpts, 30))
    d = _checkpoint(ckpts, 60)
    (d / "optimizer.pt").write_bytes(bytes(range(256)) * 8)
    seal_checkpoint(d)
    size = (d / name).stat().st_size
    _corrupt(d / name, how)
    assert (d / name).stat().st_size == size
    problem = checkpoint_problem(d) or ""
    assert name in problem and "sha256" in problem or name == "trainer_state.json" and problem, problem
    assert latest_complete_checkpoint(ckpts) == str(ckpts / "checkpoint-30")


def test_a_resume_falls_back_past_a_corrupt_checkpoint_and_says_so(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    run_dir = tmp_path / "run"
    args = ["recipe=lora-tiny", f"run_dir={run_dir}", "hparams.save_steps=2", "hparams.eval_steps=null"]
    train(load_run_config([*args, "hparams.max_steps=4"]), quiet=True)
    _corrupt(run_dir / "checkpoints" / "checkpoint-4" / "optimizer.pt", "zeroed-middle")
    summary = train(load_run_config([*args, "hparams.max_steps=6"]), quiet=True)  # no torch traceback
    out = capsys.readouterr()
    assert "skipping checkpoint-4: optimizer.pt is corrupt" in out.out + out.err
    assert summary["resumed_from"] == "checkpoint-2" and summary["steps"] == 6
