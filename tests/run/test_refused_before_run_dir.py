"""Issue 26: a run the data cannot train (hparams.seq_len too short to keep any answer token) was refused only
after a FAILED run directory had been made. It is refused before one exists, for every backend that puts the
loss on the answers; a seq_len that fits trains as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.cli import main


@pytest.mark.parametrize("overrides", [
    ["hparams.seq_len=8"],
    ["hparams.seq_len=12", "method=full"],
    ["hparams.seq_len=8", "hparams.packing=true"],
])
def test_a_seq_len_that_keeps_no_answer_leaves_no_run_dir(overrides: list[str], out_root: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "recipe=lora-tiny", "dataset=sample-chat", f"output_root={out_root}", "hparams.max_steps=2",
               *overrides])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "no assistant token left within hparams.seq_len=" in err
    assert not out_root.exists(), f"a run directory was made: {list(out_root.rglob('*'))}"
