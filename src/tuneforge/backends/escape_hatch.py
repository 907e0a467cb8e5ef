"""``backend.additional_parameters``: the escape hatch into the target's own settings, checked like any key.

- A key tuneforge itself sets from one of its settings is refused, naming that setting: the hatch would
  otherwise make the plan's estimate (and the run directory's config.yaml) disagree with what runs.
- An unknown key is refused with a did-you-mean, checked against the target's own fields: TRL's
  ``SFTConfig`` for the native backend (compose time), axolotl's config schema (with the plugins' fields)
  for axolotl, when axolotl's validator runs (``plan --validate`` and before every launch).
- A list that tuneforge emits (axolotl ``plugins``) is extended by the hatch, never replaced.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from tuneforge.schema.run import RunConfig

# SFTConfig field -> the tuneforge key the native backend sets it from
NATIVE_MODELED = {
    "output_dir": "run_dir", "num_train_epochs": "hparams.epochs", "max_steps": "hparams.max_steps",
    "per_device_train_batch_size": "hparams.micro_batch_size", "per_device_eval_batch_size": "hparams.micro_batch_size",
    "gradient_accumulation_steps": "hparams.grad_accumulation", "learning_rate": "optim.lr",
    "optim": "optim.optimizer", "lr_scheduler_type": "optim.scheduler", "warmup_steps": "optim.warmup_steps",
    "warmup_ratio": "optim.warmup_ratio", "weight_decay": "optim.weight_decay", "max_grad_norm": "optim.max_grad_norm",
    "adam_beta1": "optim.adam_beta1", "adam_beta2": "optim.adam_beta2", "adam_epsilon": "optim.adam_epsilon",
    "seed": "hparams.seed", "data_seed": "hparams.seed", "bf16": "hparams.mixed_precision",
    "fp16": "hparams.mixed_precision", "gradient_checkpointing": "hparams.gradient_checkpointing",
    "logging_steps": "hparams.logging_steps", "logging_first_step": "hparams.logging_steps",
    "eval_strategy": "hparams.eval_steps", "eval_steps": "hparams.eval_steps", "save_strategy": "hparams.save_steps",
    "save_steps": "hparams.save_steps", "save_total_limit": "hparams.save_total_limit", "max_length": "hparams.seq_len",
    "packing": "hparams.packing", "assistant_only_loss": "backend.assistant_only_loss", "report_to": "tracking",
    "dataloader_num_workers": "hparams.dataloader_num_workers", "use_cpu": "launcher (where the run trains)",
    "deepspeed": "distributed", "include_num_input_tokens_seen": "(always on: metrics.jsonl counts tokens)",
}
# axolotl key -> the tuneforge key the axolotl translation sets it from
AXOLOTL_MODELED = {
    "base_model": "model.name_or_path", "trust_remote_code": "model.trust_remote_code",
    "attn_implementation": "model.attn_implementation", "sequence_len": "hparams.seq_len",
    "sample_packing": "hparams.packing", "pad_to_sequence_len": "hparams.packing",
    "micro_batch_size": "hparams.micro_batch_size", "eval_batch_size": "hparams.micro_batch_size",
    "gradient_accumulation_steps": "hparams.grad_accumulation", "num_epochs": "hparams.epochs",
    "max_steps": "hparams.max_steps", "optimizer": "optim.optimizer", "learning_rate": "optim.lr",
    "lr_scheduler": "optim.scheduler", "weight_decay": "optim.weight_decay", "max_grad_norm": "optim.max_grad_norm",
    "adam_beta1": "optim.adam_beta1", "adam_beta2": "optim.adam_beta2", "adam_epsilon": "optim.adam_epsilon",
    "warmup_steps": "optim.warmup_steps", "warmup_ratio": "optim.warmup_ratio",
    "gradient_checkpointing": "hparams.gradient_checkpointing", "seed": "hparams.seed",
    "dataloader_num_workers": "hparams.dataloader_num_workers",
    "logging_steps": "hparams.logging_steps", "save_steps": "hparams.save_steps",
    "save_total_limit": "hparams.save_total_limit", "eval_steps": "hparams.eval_steps",
    "output_dir": "run_dir", "adapter": "method", "lora_r": "method.r", "lora_alpha": "method.alpha",
    "lora_dropout": "method.dropout", "lora_target_modules": "method.target_modules",
    "load_in_4bit": "method.quantization.bits", "load_in_8bit": "method.quantization.bits",
    "datasets": "dataset", "test_datasets": "dataset", "bf16": "hparams.mixed_precision",
    "fp16": "hparams.mixed_precision", "deepspeed": "distributed", "wandb_project": "tracking.project",
    "wandb_entity": "tracking.entity", "wandb_mode": "tracking.mode",
}
EXTENDED_LISTS = ("plugins",)


def _modeled(key: str, modeled: dict[str, str], backend: str) -> str:
    return (f"backend.additional_parameters.{key} is set by tuneforge from {modeled[key]}; set that instead "
            f"(the {backend} backend would otherwise run something the plan and config.yaml do not show)")


def unknown_key_problem(key: str, valid: Iterable[str], target: str) -> str:
    valid = sorted(valid)
    hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.75)
    return (f"backend.additional_parameters.{key} is not a field of {target}"
            + (f" (did you mean '{hint[0]}'?)" if hint else "")
            + "; the escape hatch passes only the target's own settings")


def native_fields() -> set[str]:
    """Every field of TRL's SFTConfig (TrainingArguments included): what the native backend's hatch may set."""
    import dataclasses

    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig)}


def check_native_hatch(run: RunConfig) -> Iterable[str]:
    params = dict(run.backend.additional_parameters)
    if not params:
        return  # nothing to check: no TRL import (plan stays fast)
    fields = native_fields()
    for key in params:
        if key in NATIVE_MODELED:
            yield _modeled(key, NATIVE_MODELED, "native")
        elif key not in fields:
            yield unknown_key_problem(key, fields, "TRL's SFTConfig")
    from trl import SFTConfig

    from tuneforge.backends.hatch_types import dataclass_type_problems

    checked = {k: v for k, v in params.items() if k in fields and k not in NATIVE_MODELED}
    yield from dataclass_type_problems(checked, SFTConfig, "TRL's SFTConfig")


# axolotl reads these from the environment of its process: a credential never goes into axolotl.yaml
AXOLOTL_SECRET_ENV = {"hub_token": "HF_TOKEN", "hf_token": "HF_TOKEN", "wandb_api_key": "WANDB_API_KEY",
                      "wandb_key": "WANDB_API_KEY", "openai_api_key": "OPENAI_API_KEY"}


def _secret_hatch_problems(params: Any, prefix: str = "backend.additional_parameters") -> Iterable[str]:
    """A credential-named key anywhere in the hatch: axolotl would get it only through axolotl.yaml, a file
    in the run directory, so it is refused, naming the environment variable to set instead."""
    from tuneforge.secrets import secret_items

    for dotted, _ in secret_items(params):
        leaf = dotted.rsplit(".", 1)[-1]
        var = AXOLOTL_SECRET_ENV.get(leaf.lower(), "the library's own environment variable")
        yield (f"{prefix}.{dotted} holds a credential, which backend=axolotl would write into axolotl.yaml in the "
               f"run directory; remove it and set {var} in the environment instead (axolotl's process inherits it)")


def check_axolotl_hatch(run: RunConfig) -> Iterable[str]:
    params = dict(run.backend.additional_parameters)
    for key, value in params.items():
        if key in AXOLOTL_MODELED:
            yield _modeled(key, AXOLOTL_MODELED, "axolotl")
        elif key in EXTENDED_LISTS and not isinstance(value, (list, tuple)):
            yield f"backend.additional_parameters.{key} must be a list (it extends tuneforge's own {key})"
    yield from _secret_hatch_problems(params)


def merge_hatch(cfg: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the hatch merged in (recursively); lists in EXTENDED_LISTS are extended, not replaced."""
    from tuneforge.distributed.deepspeed import deep_merge

    extended = {k: [*cfg.get(k, []), *[v for v in params[k] if v not in cfg.get(k, [])]]
                for k in EXTENDED_LISTS if k in params and isinstance(params[k], (list, tuple))}
    merged = deep_merge(cfg, {k: v for k, v in params.items() if k not in extended})
    merged.update(extended)
    return merged


def unknown_axolotl_keys(cfg: dict[str, Any], schema: Any) -> list[str]:
    """Problems for the keys of ``cfg`` that axolotl's (plugin-merged) pydantic schema does not know: its
    validator would drop them without a word."""
    fields = set(schema.model_fields)
    fields |= {f.alias for f in schema.model_fields.values() if getattr(f, "alias", None)}
    return [unknown_key_problem(k, fields, "axolotl's config schema") for k in cfg if k not in fields]
