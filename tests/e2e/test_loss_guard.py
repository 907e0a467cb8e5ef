"""Issue 12 §5: a run that trains to garbage ends FAILED (step + likely cause), never complete with exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.errors import TrainingFailedError
from tuneforge.training_guards import LossGuardCallback


def _only_run_dir(root: Path) -> Path:
    (d,) = [p for p in root.glob("*/*") if p.is_dir()]
    return d


def test_diverging_run_stops_as_failed(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    rc = main(["train", "recipe=lora-tiny", "dataset=sample-chat", f"output_root={out}", "hparams.max_steps=6",
               "hparams.eval_steps=null", "optim.lr=1e30"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "training diverged" in err and "optim.lr=1e+30" in err and "Traceback" not in err
    d = _only_run_dir(out)
    assert not (d / "summary.json").exists() and not (d / "RUNNING").exists()
    assert "TrainingFailedError" in (d / "FAILED").read_text() and "at step" in (d / "FAILED").read_text()


@pytest.mark.slow
def test_all_zero_losses_stop_the_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    rc = main(["train", "recipe=lora-tiny", "dataset=sample-chat", f"output_root={out}", "hparams.max_steps=2",
               "hparams.eval_steps=null", "hparams.packing=true", "hparams.seq_len=8"])
    err = capsys.readouterr().err
    assert rc == 1 and "exactly 0.0" in err and "hparams.seq_len=8" in err
    assert not (_only_run_dir(out) / "summary.json").exists()


@pytest.mark.slow
def test_prompts_filling_seq_len_are_a_data_error(tmp_path: Path, capsys) -> None:
    rc = main(["train", "recipe=lora-tiny", "dataset=sample-chat", f"output_root={tmp_path / 'o'}",
               "hparams.max_steps=2", "hparams.seq_len=8"])
    err = capsys.readouterr().err
    assert rc == 2 and "no training example fits" in err and "Traceback" not in err


def test_guard_rules_on_the_trainers_own_state() -> None:
    run = load_run_config(["recipe=lora-tiny"])
    state, control = TrainerState(), TrainerControl()
    guard = LossGuardCallback(run)
    for step, loss in enumerate([7.5, 0.0, 7.1, 0.0, 0.0], 1):  # isolated zeros are not a run of them
        state.global_step = step
        guard.on_log(None, state, control, logs={"loss": loss})
    state.global_step = 6
    with pytest.raises(TrainingFailedError, match="exactly 0.0 for 3 logged steps in a row"):
        guard.on_log(None, state, control, logs={"loss": 0.0})
    with pytest.raises(TrainingFailedError, match="loss is inf at step 6"):
        LossGuardCallback(run).on_log(None, state, control, logs={"loss": float("inf")})
    with pytest.raises(TrainingFailedError, match="eval_loss is nan"):
        LossGuardCallback(run).on_log(None, state, control, logs={"eval_loss": float("nan")})
    short = LossGuardCallback(run)
    short.on_log(None, state, control, logs={"loss": 0.0})
    with pytest.raises(TrainingFailedError, match="every logged loss is exactly 0.0"):
        short.on_train_end(None, state, control)
