"""Issue 26: nothing tuneforge did not write is ever deleted. ``atomic_write_dir`` replaces a directory only
when its ownership record lists every file in it, by a swap that leaves a complete copy at every instant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuneforge import rundir
from tuneforge.errors import LaunchError
from tuneforge.rundir import OWNED, atomic_write_dir


def _write(content: str):
    def write(tmp: Path) -> None:
        (tmp / "weights.bin").write_text(content)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "tokenizer.json").write_text(content)
    return write


def test_a_directory_tuneforge_did_not_write_is_refused_untouched(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(LaunchError, match=r"keep\.txt"):
        atomic_write_dir(target, _write("new"))
    assert (target / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary left behind


def test_a_file_added_to_a_tuneforge_directory_is_refused(tmp_path: Path) -> None:
    target = atomic_write_dir(tmp_path / "model", _write("old"))
    assert (target / OWNED).is_file()
    (target / "sub" / "notes.md").write_text("user notes")
    with pytest.raises(LaunchError, match=r"sub/notes\.md was not written by tuneforge"):
        atomic_write_dir(target, _write("new"))
    assert (target / "sub" / "notes.md").read_text() == "user notes" and (target / "weights.bin").read_text() == "old"
    # a plain file (or a link) where the directory should be is the user's too
    (tmp_path / "adapter").write_text("a file")
    with pytest.raises(LaunchError, match="not a directory tuneforge wrote"):
        atomic_write_dir(tmp_path / "adapter", _write("new"))


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_our_directory_is_swapped_with_a_complete_copy_at_every_instant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    target = atomic_write_dir(tmp_path / "adapter", _write("old"))

    def complete_copies() -> list[str]:
        found = []
        for d in [p for p in tmp_path.rglob("*") if p.is_dir() and (p / OWNED).is_file()]:
            if (d / "weights.bin").is_file() and (d / "sub" / "tokenizer.json").is_file():
                found.append((d / "weights.bin").read_text())
        return found

    seen: list[list[str]] = []
    real_replace = os.replace

    def observed_replace(a, b):  # the state between every step of the swap
        seen.append(complete_copies())
        real_replace(a, b)
        seen.append(complete_copies())

    monkeypatch.setattr(rundir.os, "replace", observed_replace)
    if not exchange:
        monkeypatch.setattr(rundir, "_exchange", lambda a, b: False)
    atomic_write_dir(target, _write("new"))
    assert all(s for s in seen), seen  # never a moment without one whole copy
    assert (target / "weights.bin").read_text() == "new" and (target / "sub" / "tokenizer.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # old copy and temporaries gone


def test_resuming_into_a_weights_directory_holding_a_user_file_is_refused_before_training(tmp_path: Path) -> None:
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    run_dir = tmp_path / "run"
    args = ["recipe=lora-tiny", f"run_dir={run_dir}", "hparams.save_steps=2", "hparams.eval_steps=null"]
    train(load_run_config([*args, "hparams.max_steps=2"]), quiet=True)
    (run_dir / "adapter" / "keep.txt").write_text("the user's notes")
    with pytest.raises(LaunchError, match=r"adapter/keep\.txt was not written by tuneforge"):
        train(load_run_config([*args, "hparams.max_steps=4"]), quiet=True)
    assert (run_dir / "adapter" / "keep.txt").read_text() == "the user's notes"
    assert not (run_dir / "checkpoints" / "checkpoint-4").exists()  # refused before a step was trained
