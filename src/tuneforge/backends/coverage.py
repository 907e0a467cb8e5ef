"""What each backend does with every training setting: mapped, not applicable (with why), or unsupported.

``tests/backends/test_coverage.py`` walks every field of the settings groups below and fails when a backend
does not list it, so a new field cannot be dropped silently by a translation. An *unsupported* setting that
differs from its schema default is refused at compose time with its reason (:func:`check_unsupported`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from tuneforge.schema.run import RunConfig

GROUPS = ("method", "model", "optim", "hparams", "tracking", "objective")
MAPPED = "mapped"


def na(reason: str) -> str:
    return f"n/a: {reason}"


def unsupported(reason: str) -> str:
    return f"unsupported: {reason}"


# the native backend reads the RunConfig itself (strategy, load_model, SFTConfig, tracking callbacks)
_NATIVE_NA = {
    "model.num_parameters": na("memory estimates only (plan)"),
    # TRL 1.9's preference configs truncate the whole sequence only (tuneforge.backends.preference refuses them)
    "objective.max_prompt_length": unsupported("the installed TRL truncates the whole sequence only"),
    "objective.max_completion_length": unsupported("the installed TRL truncates the whole sequence only"),
}

AXOLOTL: dict[str, str] = {
    "method.name": MAPPED, "method.r": MAPPED, "method.alpha": MAPPED, "method.dropout": MAPPED,
    "method.target_modules": MAPPED, "method.modules_to_save": MAPPED, "method.use_rslora": MAPPED,
    "method.layers_to_transform": MAPPED + " (peft_layers_to_transform)",
    "method.bias": unsupported("axolotl trains LoRA without bias terms (refused by its check unless 'none')"),
    "method.quantization.bits": MAPPED, "method.quantization.quant_type": MAPPED,
    "method.quantization.double_quant": MAPPED, "method.quantization.compute_dtype": MAPPED,
    "model.name_or_path": MAPPED, "model.trust_remote_code": MAPPED, "model.revision": MAPPED,
    "model.tokenizer": MAPPED, "model.chat_template": MAPPED, "model.attn_implementation": MAPPED,
    "model.architecture": na("axolotl loads AutoModelForCausalLM: the architecture comes from config.json"),
    "model.model_type": na("read from the model's config.json"),
    "model.num_parameters": na("memory estimates only (plan)"),
    "model.gguf.package": MAPPED + " (converted once to a local directory, given as base_model)",
    "model.gguf.file": MAPPED + " (converted once to a local directory, given as base_model)",
    "model.gguf.assemble": MAPPED + " (chunks joined once, then converted like any packaged GGUF)",
    "model.init": MAPPED + " (random: the random-init model's local directory, given as base_model)",
    "model.package": MAPPED + " (the package's model directory, given as base_model)",
    "model.dtype": MAPPED + " (axolotl loads the base in its training precision; a disagreeing dtype is refused)",
    "optim.lr": MAPPED, "optim.optimizer": MAPPED, "optim.scheduler": MAPPED, "optim.warmup_ratio": MAPPED,
    "optim.warmup_steps": MAPPED, "optim.weight_decay": MAPPED, "optim.max_grad_norm": MAPPED,
    "optim.adam_beta1": MAPPED, "optim.adam_beta2": MAPPED, "optim.adam_epsilon": MAPPED,
    "hparams.epochs": MAPPED, "hparams.max_steps": MAPPED, "hparams.micro_batch_size": MAPPED,
    "hparams.grad_accumulation": MAPPED, "hparams.seq_len": MAPPED, "hparams.packing": MAPPED,
    "hparams.seed": MAPPED, "hparams.logging_steps": MAPPED, "hparams.eval_steps": MAPPED,
    "hparams.max_eval_samples": MAPPED + " (test_datasets: the run directory's val.subset.jsonl)",
    "hparams.save_steps": MAPPED, "hparams.save_total_limit": MAPPED, "hparams.gradient_checkpointing": MAPPED,
    "hparams.mixed_precision": MAPPED, "hparams.dataloader_num_workers": MAPPED,
    "tracking.name": MAPPED, "tracking.project": MAPPED, "tracking.entity": MAPPED, "tracking.mode": MAPPED,
    "objective.name": MAPPED + " (dpo: rl; sft: no rl key; orpo/kto refused: other row shapes)",
    "objective.beta": MAPPED + " (rl_beta)", "objective.loss_type": MAPPED + " (rl: dpo|ipo|simpo)",
    "objective.reference": MAPPED + " (precomputed: precompute_ref_log_probs)",
    "objective.max_prompt_length": MAPPED + " (max_prompt_len)", "objective.simpo_gamma": MAPPED,
    "objective.max_completion_length": unsupported("axolotl has max_prompt_len only; leave it null"),
    "tracking.tags": unsupported("axolotl's config has no wandb tags; use backend=native, or pass them as "
                                 "+launcher.env.WANDB_TAGS=a,b"),
}


def settings_fields(prefix_groups: Iterable[str] = GROUPS) -> list[str]:
    """Dotted names of every leaf field of the settings groups (nested dataclasses walked; model.tiny is one
    entry: the locally built model is handed to every backend as a directory)."""
    hints = typing.get_type_hints(RunConfig)
    out: list[str] = []

    def walk(tp: Any, prefix: str) -> None:
        sub = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            t = sub[f.name]
            inner = [a for a in (t, *typing.get_args(t)) if isinstance(a, type) and dataclasses.is_dataclass(a)]
            if inner and f"{prefix}{f.name}" != "model.tiny":
                walk(inner[0], f"{prefix}{f.name}.")
            elif f"{prefix}{f.name}" != "model.tiny":
                out.append(f"{prefix}{f.name}")

    for g in prefix_groups:
        walk(hints[g], f"{g}.")
    return out


def coverage(backend: str) -> dict[str, str]:
    if backend == "axolotl":
        return AXOLOTL
    return {k: _NATIVE_NA.get(k, MAPPED) for k in settings_fields()}


def _value(run: RunConfig, key: str) -> Any:
    obj: Any = run
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _default(key: str) -> Any:
    group, *rest = key.split(".")
    tp: Any = typing.get_type_hints(RunConfig)[group]
    for i, part in enumerate(rest):
        f = {x.name: x for x in dataclasses.fields(tp)}[part]
        if i == len(rest) - 1:
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        tp = typing.get_type_hints(tp)[part]


def check_unsupported(run: RunConfig, backend: str) -> Iterable[str]:
    for key, what in coverage(backend).items():
        if what.startswith("unsupported") and key != "method.bias" and _value(run, key) != _default(key):
            yield f"{key}={_value(run, key)!r} has no effect with backend={backend}: {what.split(': ', 1)[1]}"
