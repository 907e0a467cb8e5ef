"""Issue 26: a run whose gradients are exactly zero or whose loss never moves (``optim.lr=1e10`` saturates the
model: grad norm 0.0 from step 2, the loss flat to float noise) ends FAILED with a reason, exit 1, never
complete; a converged run (small but non-zero gradients, per-batch losses that still differ) is not flagged."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.errors import TrainingFailedError
from tuneforge.training_guards import LossGuardCallback

REASONS = ("gradient norm is exactly 0.0", "loss has not moved")


@pytest.mark.parametrize("extra", [[], ["optim.max_grad_norm=0", "optim.optimizer=sgd"]], ids=["adamw", "sgd-no-clip"])
def test_a_saturated_run_ends_failed_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   extra: list[str]) -> None:
    out = tmp_path / "o"
    rc = main(["train", "recipe=lora-tiny", f"output_root={out}", "hparams.max_steps=12", "hparams.logging_steps=1",
               "hparams.eval_steps=null", "optim.lr=1e10", *extra])
    err = capsys.readouterr().err
    assert rc == 1, err[-2000:]
    reason = next((r for r in REASONS if r in err), None)
    assert reason and "optim.lr=10000000000.0" in err and "Traceback" not in err, err[-2000:]
    (d,) = [p for p in out.glob("*/*") if p.is_dir()]
    assert not (d / "summary.json").exists() and reason in (d / "FAILED").read_text()


def _feed(guard: LossGuardCallback, logs: list[dict]) -> None:
    state, control = TrainerState(), TrainerControl()
    for step, rec in enumerate(logs, 1):
        state.global_step = step
        guard.on_log(None, state, control, logs=rec)
    guard.on_train_end(None, state, control)


def test_a_converged_run_is_not_a_false_alarm() -> None:
    run = load_run_config(["recipe=lora-tiny"])
    rng = random.Random(0)
    # converged: loss near its floor, per-batch noise of a few percent, small non-zero gradients
    converged = [{"loss": 0.05 + 0.002 * rng.random(), "grad_norm": 1e-4 * (1 + rng.random())} for _ in range(200)]
    _feed(LossGuardCallback(run), converged)
    # slow but real progress, and an occasional zero gradient norm (a skipped step) among real ones
    slow = [{"loss": 2.0 * math.exp(-i / 500) + 0.01 * rng.random(), "grad_norm": 0.0 if i % 7 == 0 else 0.3}
            for i in range(200)]
    _feed(LossGuardCallback(run), slow)


def test_flat_losses_and_zero_gradients_are_caught_on_synthetic_logs() -> None:
    run = load_run_config(["recipe=lora-tiny"])
    with pytest.raises(TrainingFailedError, match="exactly 0.0 for 3 logged steps"):
        _feed(LossGuardCallback(run), [{"loss": 7.6, "grad_norm": 0.2}] + [{"loss": 7.59, "grad_norm": 0.0}] * 3)
    with pytest.raises(TrainingFailedError, match="loss has not moved for 5 logged steps"):
        _feed(LossGuardCallback(run), [{"loss": 7.6}] + [{"loss": 7.5893330 + 1e-7 * (i % 2)} for i in range(5)])
