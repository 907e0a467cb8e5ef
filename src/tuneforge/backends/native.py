"""The native backend: transformers + PEFT + TRL ``SFTTrainer``, in process. CPU here, GPU(s) where present.

Under a multi-process launcher (accelerate/torchrun) each rank runs ``python -m tuneforge.worker <run_dir>``,
which calls :meth:`NativeBackend.train`; the Trainer picks up the process group from the environment.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneforge.backends.hf_trainer import MetricsCallback, trainer_arguments
from tuneforge.schema.components import CONVERSATION_FORMATS, BackendBase, LossMask
from tuneforge.schema.dataset import PREFERENCE_FORMATS
from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)


class NativeBackend(BackendBase):
    name = "native"
    objectives = ("sft", "dpo", "orpo", "kto")  # objective=... it trains (tuneforge.schema.objective)
    data_formats = (*CONVERSATION_FORMATS, *PREFERENCE_FORMATS)

    def coverage(self) -> dict[str, str]:
        from tuneforge.backends.coverage import native_table

        return native_table()

    def loss_mask(self, run: RunConfig) -> LossMask:
        return "assistant-only" if run.backend.assistant_only_loss else "all-tokens"

    def check(self, run: RunConfig) -> Iterable[str]:
        from tuneforge.models import CHAT_TEMPLATES

        if run.model.chat_template not in ("tokenizer_default", *CHAT_TEMPLATES):
            yield (f"model.chat_template={run.model.chat_template!r} is not known; "
                   f"choose one of: tokenizer_default, {', '.join(CHAT_TEMPLATES)}")
        from tuneforge.backends.escape_hatch import check_native_hatch  # against SFTConfig's own fields

        yield from check_native_hatch(run)
        d = run.distributed
        if run.method.quantization.bits is not None and d.zero_stage == 3:
            yield (f"method={run.method.name} with distributed={d.name} on backend=native: the native backend "
                   "places the quantized model per GPU (device_map), which ZeRO-3 cannot shard; use "
                   "distributed=zero2, or backend=axolotl (it loads QLoRA for ZeRO-3)")
        from tuneforge.backends.preference import check_preference  # objective=dpo|orpo|kto

        yield from check_preference(run)

    def run_in_process(self, run: RunConfig, run_dir: Path) -> dict[str, Any]:
        return self.train(run, run_dir)

    # --- training ------------------------------------------------------------------------------------------

    def build_trainer(self, run: RunConfig, run_dir: Path, callbacks: list | None = None) -> Any:
        import torch
        from datasets import load_dataset
        from trl import SFTConfig, SFTTrainer

        from tuneforge.console import verbose_requested
        from tuneforge.data.prepare import prepare_splits
        from tuneforge.models import load_model, load_tokenizer
        from tuneforge.strategies.registry import get_strategy
        from tuneforge.tracking.trackers import tracking_callbacks

        h = run.hparams
        verbose = verbose_requested()
        if not verbose:
            from tuneforge.console import quiet_library_progress

            quiet_library_progress()
        if run.objective.is_preference:  # TRL's DPO/ORPO/KTO trainers (tuneforge.backends.preference)
            from tuneforge.backends.preference import build_preference_trainer

            trainer, tokenizer = build_preference_trainer(run, run_dir, callbacks or [], verbose)
            _one_live_line(trainer, run, verbose)
            return trainer, tokenizer
        strategy = get_strategy(run)
        data = prepare_splits(run.dataset)
        tokenizer = load_tokenizer(run)

        quant = strategy.quantization_config(run)
        device_map = None
        if quant is not None:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            device_map = {"": local_rank} if torch.cuda.is_available() else {"": "cpu"}
        model = load_model(run, quantization_config=quant, device_map=device_map)
        model.config.use_cache = False
        from transformers import set_seed

        set_seed(h.seed)  # the adapter's random init: same config + seed => same weights
        model = strategy.build(run, model)

        files = {"train": str(data.train)}
        if data.sizes.get("val"):
            files["validation"] = str(data.val)
        ds = load_dataset("json", data_files=files)
        if run.backend.assistant_only_loss:
            # masks by role for any chat template (tuneforge.data.masking); TRL turns them into labels
            ds = tokenize_by_role(ds, tokenizer, h.seq_len)
        eval_split = ds.get("validation")
        if eval_split is not None and h.max_eval_samples is not None:
            eval_split = eval_split.select(range(min(h.max_eval_samples, len(eval_split))))
        args = SFTConfig(
            **trainer_arguments(run, run_dir, evaluate=eval_split is not None),
            gradient_checkpointing=h.gradient_checkpointing,
            max_length=h.seq_len,
            packing=h.packing,
            assistant_only_loss=False,  # the dataset already carries assistant_masks (any template)
            include_num_input_tokens_seen="non_padding",
            disable_tqdm=not verbose,
            # distributed=zero*: the plan's ds_config.json (written next to config.yaml by the launcher)
            deepspeed=str(run_dir / "ds_config.json") if run.distributed.zero_stage is not None else None,
            **run.backend.additional_parameters,
        )
        from tuneforge.secrets import keep_secrets_out_of_args

        keep_secrets_out_of_args(args)  # training_args.bin is pickled into every checkpoint
        from tuneforge.distributed.ranks import recording_trainer, world_size_from_env

        # several ranks: each remembers the ids of the sequences it trained on (ranks/rank-<k>.json)
        trainer_cls = recording_trainer(SFTTrainer) if world_size_from_env() > 1 else SFTTrainer
        if world_size_from_env() > 1 and not torch.cuda.is_available():
            trainer_cls = cpu_resumable_trainer(trainer_cls)
        with _packing_warnings_answered(run):
            trainer = trainer_cls(
                model=model,
                args=args,
                train_dataset=ds["train"],
                eval_dataset=eval_split,
                processing_class=tokenizer,
                callbacks=[*(callbacks or []), *tracking_callbacks(run, run_dir)],  # tracking=wandb|tensorboard
            )
        from tuneforge.training_guards import check_train_dataset

        check_train_dataset(trainer, run)  # truncation may have left nothing to train on
        _one_live_line(trainer, run, verbose)
        if run.distributed.zero_stage is not None and not trainer.is_deepspeed_enabled:
            from tuneforge.errors import LaunchError  # never let a ZeRO run quietly train as plain DDP

            raise LaunchError(f"distributed={run.distributed.name}: DeepSpeed is not active in this process "
                              f"({trainer.accelerator.distributed_type}); start it with launcher=accelerate")
        return trainer, tokenizer

    def train(self, run: RunConfig, run_dir: Path) -> dict[str, Any]:
        from tuneforge.strategies.registry import get_strategy

        t0 = time.perf_counter()
        metrics_cb = MetricsCallback(run_dir / "metrics.jsonl")
        from tuneforge.preemption import preemption_callbacks  # checkpoint + requeue on Slurm's signal
        from tuneforge.training_guards import guard_callbacks  # NaN/zero-loss stop, checkpoint seals

        callbacks = [metrics_cb, *preemption_callbacks(run_dir), *guard_callbacks(run)]
        trainer, tokenizer = self.build_trainer(run, run_dir, callbacks=callbacks)
        from tuneforge.checkpoints import train_or_resume  # from the latest *complete* checkpoint, exactly
        from tuneforge.preemption import restore_signal_handlers

        try:
            result = train_or_resume(trainer, run_dir)
        finally:
            restore_signal_handlers()  # the preemption callback's, however training ended
        eval_loss = None
        if trainer.eval_dataset is not None:
            eval_loss = trainer.evaluate().get("eval_loss")
        out_name = "adapter" if get_strategy(run).uses_adapter else "model"
        if trainer.is_world_process_zero():
            from tuneforge.rundir import atomic_write_dir

            def save(tmp: Path) -> None:
                trainer.model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)

            atomic_write_dir(run_dir / out_name, save)
        from tuneforge.distributed.ranks import write_rank_record

        write_rank_record(run_dir, trainer)  # every rank, when there are several: steps, samples, weights hash
        history = [r for r in trainer.state.log_history if "loss" in r]
        import torch

        peak = {"peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 3)} \
            if torch.cuda.is_available() else {}
        return {
            **peak,
            "train_loss": result.training_loss,
            "first_loss": history[0]["loss"] if history else None,
            "last_loss": history[-1]["loss"] if history else None,
            "eval_loss": eval_loss,
            "steps": trainer.state.global_step,
            "tokens": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
            "train_runtime_s": result.metrics.get("train_runtime"),
            "time_to_first_step_s": metrics_cb.first_step_s,
            "first_step_unix": metrics_cb.first_step_unix,
            "train_begin_unix": metrics_cb.train_begin_unix,
            "wall_s": time.perf_counter() - t0,
            "weights": out_name,
            "world_size": trainer.args.world_size,
            "objective": run.objective.name,
            **({"parent": run.init.run} if run.init.run else {}),
        }


def _one_live_line(trainer: Any, run: RunConfig, verbose: bool) -> None:
    """One live line (tuneforge.console) instead of the Trainer's printed log dicts."""
    if verbose:
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from tuneforge.console import TrainProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainProgressCallback(run.name))


class _DropFlashAttentionAdvice(logging.Filter):
    """TRL warns that packing without flash-attention "may lead to cross-contamination between samples".

    Not so here: transformers builds a block-diagonal mask from the reset position ids when there is no KV
    cache (training sets ``use_cache=False``), for sdpa and eager alike; tests/models/test_masking_and_packing.py
    compares packed and unpacked logits. The advice stays for the implementations tuneforge has not checked."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not set to a supported Flash Attention variant" not in record.getMessage()


@contextmanager
def _packing_warnings_answered(run: RunConfig) -> Iterator[None]:
    impl = run.model.attn_implementation or "sdpa"
    if not run.hparams.packing or impl not in ("sdpa", "eager"):
        yield
        return
    trl_log, flt = logging.getLogger("trl.trainer.sft_trainer"), _DropFlashAttentionAdvice()
    trl_log.addFilter(flt)
    try:
        yield
    finally:
        trl_log.removeFilter(flt)
    log.debug("packing: examples are isolated by their reset position ids (%s attention, no KV cache)", impl)


def tokenize_by_role(ds: Any, tokenizer: Any, max_length: int) -> Any:
    """Chat rows -> ``input_ids`` + ``assistant_masks`` (1 on assistant turns and their end-of-turn token)."""
    from tuneforge.data.masking import tokenize_with_role_mask

    def encode(row: dict[str, Any]) -> dict[str, list[int]]:
        return tokenize_with_role_mask(tokenizer, row["messages"], max_length=max_length)

    out = ds.map(encode, remove_columns=ds["train"].column_names, desc="Masking by role")
    empty = [name for name, split in out.items() if any(1 not in m for m in split["assistant_masks"])]
    if empty:
        from tuneforge.errors import DataError

        raise DataError(f"{', '.join(empty)}: an example has no assistant token left within hparams.seq_len="
                        f"{max_length}; raise seq_len or shorten the prompts")
    return out


def cpu_resumable_trainer(trainer_cls: type) -> type:
    """A subclass that can resume a multi-process CPU run.

    With world_size > 1 transformers loads the optimizer state with ``map_location=args.device``; on a CPU
    rank that is ``torch.device("cpu", k)``, which torch.load cannot restore to ("don't know how to restore
    data location ... cpu:0"). Every CPU rank's right location is plain "cpu".
    """
    import torch

    class CPUResumableTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def _load_optimizer_and_scheduler(self, checkpoint: Any) -> Any:
            original = torch.load

            def load_to_cpu(*args: Any, **kwargs: Any) -> Any:
                loc = kwargs.get("map_location")
                if isinstance(loc, torch.device) and loc.type == "cpu" or loc in ("cpu:0",):
                    kwargs["map_location"] = "cpu"
                return original(*args, **kwargs)

            torch.load = load_to_cpu
            try:
                return super()._load_optimizer_and_scheduler(checkpoint)
            finally:
                torch.load = original

    CPUResumableTrainer.__name__ = f"CPUResumable{trainer_cls.__name__}"
    return CPUResumableTrainer
