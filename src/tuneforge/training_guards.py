"""Stop a run that trains to garbage, instead of marking it complete.

:class:`LossGuardCallback` watches every logged loss. A NaN or infinite loss (or eval loss) stops the run at
once; a run of exactly-zero training losses stops it too (nothing is learned: every label is masked); so
does a run of exactly-zero gradient norms, or of losses that do not move at all over several logged steps
(different batches give different losses, by far more than float noise, unless the weights stopped changing:
a learning rate so high that the model saturated, e.g. ``optim.lr=1e10``). A converged run is not flagged:
its gradients are small, not exactly zero, and its per-batch losses still differ. Both
raise :class:`~tuneforge.errors.TrainingFailedError` naming the step and the likely cause, so the run
directory ends ``FAILED`` without summary.json. :func:`check_train_dataset` refuses a training set that the
trainer's own preprocessing left empty (every prompt filling ``hparams.seq_len``).
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from tuneforge.errors import DataError, TrainingFailedError
from tuneforge.schema.run import RunConfig

ZERO_LOSS_RUN = 3  # consecutive logged losses of exactly 0.0 that stop a run
ZERO_GRAD_RUN = 3  # consecutive logged gradient norms of exactly 0.0 (with a non-zero loss) that stop a run
FLAT_RUN = 5  # consecutive logged losses within FLAT_REL of each other: the weights no longer change
FLAT_REL = 1e-5  # float noise of an unchanged model is ~1e-7 relative; batch-to-batch variation is >1e-3


def _non_finite_cause(run: RunConfig) -> str:
    o, h = run.optim, run.hparams
    return (f"likely causes: a learning rate too high for this model (optim.lr={o.lr}), "
            f"{'fp16 overflow (try hparams.mixed_precision=bf16), ' if h.mixed_precision == 'fp16' else ''}"
            f"gradient clipping off (optim.max_grad_norm={o.max_grad_norm}), or corrupt input rows")


def _stuck_cause(run: RunConfig) -> str:
    return (f"likely causes: a learning rate so high the model saturated (optim.lr={run.optim.lr}; typical LoRA "
            "values are 1e-5..5e-4), no trainable parameters, or a dataset of one repeated example")


def _zero_cause(run: RunConfig) -> str:
    h = run.hparams
    return ("no token carries a loss: "
            + (f"hparams.packing=true with hparams.seq_len={h.seq_len} leaves no room for an answer, "
               if h.packing else f"hparams.seq_len={h.seq_len} may cut off every answer, ")
            + "or the assistant-only mask (backend.assistant_only_loss) hides every token; "
              "raise hparams.seq_len or check the chat template")


class LossGuardCallback(TrainerCallback):
    def __init__(self, run: RunConfig, zero_run: int = ZERO_LOSS_RUN):
        self.run = run
        self.zero_run = zero_run
        self.zeros = 0
        self.seen = 0
        self.zero_grads = 0
        self.recent: list[float] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        logs = logs or {}
        for key in ("loss", "eval_loss"):
            v = logs.get(key)
            if isinstance(v, (int, float)) and not math.isfinite(v):
                raise TrainingFailedError(f"{key} is {v} at step {state.global_step}: training diverged; "
                                          f"{_non_finite_cause(self.run)}")
        g = logs.get("grad_norm")
        # fp16's loss scaler skips an overflowing step on purpose (and logs an inf norm); anywhere else a
        # non-finite gradient norm means the weights are now NaN (the Trainer logs such a step's loss as 0.0)
        if isinstance(g, (int, float)) and not math.isfinite(g) and self.run.hparams.mixed_precision != "fp16":
            raise TrainingFailedError(f"grad_norm is {g} at step {state.global_step}: training diverged; "
                                      f"{_non_finite_cause(self.run)}")
        loss = logs.get("loss")
        if isinstance(loss, (int, float)):
            self.seen += 1
            self.zeros = self.zeros + 1 if loss == 0.0 else 0
            if self.zeros >= self.zero_run:
                raise TrainingFailedError(f"loss is exactly 0.0 for {self.zeros} logged steps in a row (up to step "
                                          f"{state.global_step}): {_zero_cause(self.run)}")
            self._check_stuck(loss, g, state.global_step)

    def _check_stuck(self, loss: float, grad_norm: Any, step: int) -> None:
        if loss == 0.0:
            return
        self.zero_grads = self.zero_grads + 1 if grad_norm == 0.0 and isinstance(grad_norm, (int, float)) else 0
        if self.zero_grads >= ZERO_GRAD_RUN:
            raise TrainingFailedError(f"the gradient norm is exactly 0.0 for {self.zero_grads} logged steps in a row "
                                      f"(up to step {step}) while the loss is {loss:.4g}: nothing is being learned; "
                                      f"{_stuck_cause(self.run)}")
        self.recent = [*self.recent, loss][-FLAT_RUN:]
        lo, hi = min(self.recent), max(self.recent)
        if len(self.recent) == FLAT_RUN and hi - lo <= FLAT_REL * max(abs(hi), 1e-3):
            raise TrainingFailedError(f"the loss has not moved for {FLAT_RUN} logged steps (up to step {step}: "
                                      f"{lo:.6g}..{hi:.6g}, every batch alike): the weights no longer change; "
                                      f"{_stuck_cause(self.run)}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.seen and self.zeros == self.seen:  # a run too short for zero_run, yet never a non-zero loss
            raise TrainingFailedError(f"every logged loss is exactly 0.0 (steps 1..{state.global_step}): "
                                      f"{_zero_cause(self.run)}")


def check_train_dataset(trainer: Any, run: RunConfig) -> None:
    """The trainer drops examples that truncation to ``hparams.seq_len`` left without a single loss token."""
    n = len(trainer.train_dataset) if hasattr(trainer.train_dataset, "__len__") else None
    if n == 0:
        raise DataError(f"no training example fits: with hparams.seq_len={run.hparams.seq_len} every example is "
                        "cut before its answer starts (the trainer dropped them all); raise hparams.seq_len "
                        "(`tuneforge data prepare` shows the token lengths)")


def guard_callbacks(run: RunConfig) -> list[Any]:
    """What every training process installs: the loss guard and the checkpoint seal."""
    from tuneforge.checkpoints import CheckpointSealCallback

    return [LossGuardCallback(run), CheckpointSealCallback()]
