"""What the backends built on transformers' ``Trainer`` share (native: TRL's SFTTrainer; sentence-transformers'
trainer): the TrainingArguments fields that come straight from the RunConfig, the precision rule, and the
callback that writes metrics.jsonl. Each backend adds only the fields that are its own."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tuneforge.callbacks import CallbackBase
from tuneforge.schema.run import RunConfig


def cpu_has_native_bf16() -> bool:
    """The CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX): oneDNN's own test, the one torch's
    CPU autocast relies on. Without it bf16 is emulated and much slower than fp32 (24x on an AVX2 EPYC)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mixed_precision(run: RunConfig) -> tuple[bool, bool]:
    """(bf16, fp16) for TrainingArguments. 'auto' = bf16 on a GPU that supports it and, for a real model, on a
    CPU with native bf16 instructions (bf16 autocast: ~2x the tokens/s of fp32 for Gemma 3 270M on a 2-core
    AVX512-BF16 EPYC, README); fp32 elsewhere. The tiny random model stays fp32: it is overhead-bound, and the
    tests that train it compare exact losses."""
    import torch

    mp = run.hparams.mixed_precision
    if mp == "bf16":
        return True, False
    if mp == "fp16":
        return False, True
    if mp == "auto" and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(), False
    if mp == "auto" and not torch.cuda.is_available() and run.model.tiny is None and cpu_has_native_bf16():
        return True, False
    return False, False


class MetricsCallback(CallbackBase):
    """Appends one JSON line per log event to metrics.jsonl (rank 0 only), with tokens/s and elapsed time."""

    def __init__(self, path: Path):
        self.path = path
        self.t0 = time.perf_counter()
        self.last_t = self.t0
        self.last_tokens = 0
        self.first_step_s: float | None = None
        self.first_step_unix: float | None = None
        self.train_begin_unix: float | None = None  # the training loop starts: model, data, Trainer all ready

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.train_begin_unix is None:
            self.train_begin_unix = time.time()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self.t0
            self.first_step_unix = time.time()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        event = "train" if "loss" in logs else "eval" if "eval_loss" in logs else "end"
        rec: dict[str, Any] = {"event": event, "step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for k, v in logs.items():
            if isinstance(v, (int, float)):
                rec["lr" if k == "learning_rate" else k] = v
        if event == "train":
            dt = now - self.last_t
            rec["tokens"] = tokens
            rec["tokens_per_s"] = round((tokens - self.last_tokens) / dt, 1) if dt > 0 else None
            self.last_t, self.last_tokens = now, tokens
        rec["elapsed_s"] = round(now - self.t0, 3)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


def trainer_arguments(run: RunConfig, run_dir: Path, *, evaluate: bool) -> dict[str, Any]:
    """The TrainingArguments keywords every Trainer-based backend sets the same way (``evaluate``: there is
    something to evaluate on during training)."""
    import torch

    h, o = run.hparams, run.optim
    bf16, fp16 = mixed_precision(run)
    return dict(
        output_dir=str(Path(run_dir) / "checkpoints"),
        num_train_epochs=h.epochs,
        max_steps=h.max_steps,
        per_device_train_batch_size=h.micro_batch_size,
        per_device_eval_batch_size=h.micro_batch_size,
        gradient_accumulation_steps=h.grad_accumulation,
        learning_rate=o.lr,
        optim=o.optimizer,
        lr_scheduler_type=o.scheduler,
        warmup_steps=o.warmup_steps if o.warmup_steps else o.warmup_ratio,
        weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm,
        adam_beta1=o.adam_beta1,
        adam_beta2=o.adam_beta2,
        adam_epsilon=o.adam_epsilon,
        seed=h.seed,
        data_seed=h.seed,
        bf16=bf16,
        fp16=fp16,
        logging_steps=h.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if h.eval_steps and evaluate else "no",
        eval_steps=h.eval_steps,
        save_strategy="steps" if h.save_steps else "no",
        save_steps=h.save_steps or 500,
        save_total_limit=h.save_total_limit,
        report_to=[],
        dataloader_num_workers=h.dataloader_num_workers,
        use_cpu=not torch.cuda.is_available(),
    )
