"""What each backend does with every training setting: mapped, not applicable (with why), or unsupported.

Each backend's ``coverage()`` returns one of the tables below. ``tests/backends/test_coverage.py`` walks every
field of the settings groups for **every registered backend** and fails when one does not list it, so a new
field cannot be dropped silently by a translation. An *unsupported* setting that differs from its schema
default is refused at compose time with its reason (:func:`check_unsupported`, called for every backend by
``tuneforge.config.validate``).
"""

from __future__ import annotations

import dataclasses
import functools
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
    "method.bias": unsupported("axolotl trains LoRA without bias terms; use method.bias=none, or backend=native"),
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
    "objective.sft_weight": MAPPED + " (dpo_loss_type + dpo_loss_weights; simpo: cpo_alpha)",
    "objective.max_completion_length": unsupported("axolotl has max_prompt_len only; leave it null"),
    "tracking.tags": unsupported("axolotl's config has no wandb tags; use backend=native, or pass them as "
                                 "+launcher.env.WANDB_TAGS=a,b"),
}


@functools.cache
def settings_fields(prefix_groups: tuple[str, ...] = GROUPS) -> tuple[str, ...]:
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
    return tuple(out)  # the schema does not change in a process: walked once


def native_table() -> dict[str, str]:
    return {k: _NATIVE_NA.get(k, MAPPED) for k in settings_fields()}


def _by_rules(rules: list[tuple[str, str]], default: str) -> dict[str, str]:
    """Every setting gets the verdict of the first rule naming it: its exact key, or a prefix ending in '.'."""
    return {key: next((v for k, v in rules if key == k or (k.endswith(".") and key.startswith(k))), default)
            for key in settings_fields()}


_OPENAI: list[tuple[str, str]] = [
    ("method.name", MAPPED + " (full only: OpenAI decides how its models are tuned; lora/qlora are refused)"),
    ("method.quantization.", unsupported("a hosted model cannot be quantized")),
    ("method.", na("LoRA settings: method=full is the only method a hosted job takes")),
    ("model.name_or_path", MAPPED + " (the job's model)"),
    ("model.", na("the hosted model is named by model.name_or_path; OpenAI loads and runs it")),
    ("optim.", unsupported("OpenAI picks the optimizer and learning rate; scale it with "
                           "backend.learning_rate_multiplier, and use optim=hosted")),
    *[(f"hparams.{k}", MAPPED + " (n_epochs, batch_size = micro_batch_size x grad_accumulation, seed)")
      for k in ("epochs", "micro_batch_size", "grad_accumulation", "seed")],
    ("hparams.max_steps", unsupported("a hosted job trains whole epochs: use hparams.epochs")),
    ("hparams.seq_len", unsupported("OpenAI's per-example limit is the model's (backend.example_token_limits)")),
    ("hparams.packing", unsupported("OpenAI batches examples itself")),
    ("hparams.", unsupported("a hosted job has no such setting")),
    ("tracking.name", unsupported("not wired for backend=openai (metrics.jsonl has the job's metrics)")),
    ("tracking.", na("tracking is refused for backend=openai (tracking.name)")),
    ("objective.name", MAPPED + " (method.type: supervised | dpo; orpo/kto refused)"),
    ("objective.beta", MAPPED + " (method.dpo.hyperparameters.beta)"),
    ("objective.", unsupported("OpenAI's DPO job takes beta only (its reference is the job's starting model)")),
]

_ST_OWN_FILES = na("a sentence-transformers model directory carries its own modules, tokenizer and dtype")
_SENTENCE_TRANSFORMERS: list[tuple[str, str]] = [
    ("method.modules_to_save", unsupported("the encoder's LoRA adapter saves no extra modules")),
    ("method.quantization.", na("method=qlora is refused: a 4-bit encoder cannot be trained here")),
    *[(f"model.{k}", _ST_OWN_FILES) for k in ("architecture", "model_type", "dtype", "chat_template",
                                              "attn_implementation", "tokenizer", "revision", "init", "gguf.")],
    ("model.num_parameters", na("memory estimates only (plan)")),
    ("hparams.packing", unsupported("each text is encoded alone (refused when true)")),
    ("hparams.gradient_checkpointing", unsupported("not wired for sentence-transformers (refused when true)")),
    ("hparams.seq_len", MAPPED + " (max_seq_length while training, unless backend.max_seq_length)"),
    ("objective.name", MAPPED + " (sft only: a contrastive loss over pairs; preference objectives are refused)"),
    ("objective.", na("preference settings: objective=sft is the only objective an embedding model trains")),
]


def openai_table() -> dict[str, str]:
    return _by_rules(_OPENAI, default=na("not part of a hosted job"))


def sentence_transformers_table() -> dict[str, str]:
    return _by_rules(_SENTENCE_TRANSFORMERS, default=MAPPED)


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


def check_unsupported(run: RunConfig, backend: Any) -> Iterable[str]:
    """A setting the backend's table calls unsupported, changed from its default: refused with the reason."""
    for key, what in backend.coverage().items():
        if not what.startswith("unsupported"):
            continue
        default = _default(key)
        if default == dataclasses.MISSING or default == "???":
            continue  # a group's choice (tracking.name): the backend's own check refuses the ones it cannot run
        if _value(run, key) != default:
            yield f"{key}={_value(run, key)!r} has no effect with backend={backend.name}: {what.split(': ', 1)[1]}"
