"""Issue 26: a batch bigger than the train split (the micro batch alone, or micro batch x grad accumulation x
devices) ran as one whole-split batch without a word. plan and train warn, naming the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.data.prepare import prepare_splits

BASE = ["recipe=lora-tiny", "dataset=sample-chat"]


def _train_examples() -> int:
    from tuneforge.config.compose import load_run_config

    return prepare_splits(load_run_config(BASE).dataset).sizes["train"]


@pytest.mark.parametrize(("overrides", "fragments"), [
    (["hparams.micro_batch_size=1000000"], ["hparams.micro_batch_size=1000000", "exceeds the train split"]),
    (["hparams.micro_batch_size=4", "hparams.grad_accumulation=64"],
     ["hparams.micro_batch_size=4 x hparams.grad_accumulation=64 x 1 device(s) = 256 examples"]),
])
def test_plan_warns_when_a_batch_exceeds_the_train_split(overrides: list[str], fragments: list[str], out_root: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    n = _train_examples()
    assert main(["plan", *BASE, f"output_root={out_root}", *overrides]) == 0
    out = capsys.readouterr().out
    warnings = out.split("# WARNINGS", 1)[1]
    assert all(f in warnings for f in fragments), warnings
    assert f"has {n} examples" in warnings


def test_train_warns_too(out_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = _train_examples()
    assert main(["train", *BASE, f"output_root={out_root}", "hparams.micro_batch_size=1000000",
                 "hparams.max_steps=1", "hparams.eval_steps=null", "hparams.max_eval_samples=2"]) == 0
    err = capsys.readouterr().err
    assert "tuneforge: warning: hparams.micro_batch_size=1000000 exceeds the train split" in err
    assert f"has {n} examples" in err


def test_no_warning_for_a_batch_that_fits(out_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *BASE, f"output_root={out_root}", "hparams.micro_batch_size=2"]) == 0
    assert "exceeds the train split" not in capsys.readouterr().out
