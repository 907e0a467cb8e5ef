"""Translation of a run config into axolotl's YAML: a pure function of the run config and paths (no torch,
no axolotl import), so ``plan`` shows the YAML in milliseconds. The backend (:mod:`tuneforge.backends.axolotl`)
writes it, validates it with axolotl's own validator and launches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuneforge.schema.run import RunConfig

AXOLOTL_YAML = "axolotl.yaml"
PLUGIN = "tuneforge.backends.axolotl.TuneforgeAxolotlPlugin"
DEVICES = ("auto", "cpu", "cuda")


def on_cpu(run: RunConfig) -> bool:
    if run.backend.device != "auto":
        return run.backend.device == "cpu"
    from tuneforge.distributed.devices import runs_on_cpu

    return runs_on_cpu(run)


def model_path(run: RunConfig, *, build: bool = False) -> str:
    """axolotl's base_model: the tiny model's local directory (built only when ``build``), else the hub id."""
    from tuneforge.models import local_model_dir

    local = local_model_dir(run.model, build=build)
    return str(local) if local is not None else run.model.name_or_path


VAL_SUBSET = "val.subset.jsonl"  # hparams.max_eval_samples: the first N validation rows, in the run directory


def data_paths(run: RunConfig, *, prepare: bool = False, run_dir: Path | None = None) -> dict[str, Any]:
    """The prepared chat-JSONL splits (prepared only when ``prepare``; plan just names the cached files).

    With ``hparams.max_eval_samples`` the validation file is the run directory's ``val.subset.jsonl``
    (axolotl has no such key), written here when ``prepare``."""
    n = run.hparams.max_eval_samples
    if prepare:
        from tuneforge.data.prepare import prepare_splits

        data = prepare_splits(run.dataset)
        out = {"train": data.train, "val": data.val, "val_rows": data.sizes.get("val", 0)}
        if n is not None and run_dir is not None and out["val_rows"]:
            from tuneforge.rundir import atomic_write_text

            with Path(data.val).open(encoding="utf-8") as f:
                rows = [line for line in f if line.strip()][:n]
            atomic_write_text(Path(run_dir) / VAL_SUBSET, "".join(rows))
            out.update(val=Path(run_dir) / VAL_SUBSET, val_rows=len(rows))
        return out
    from tuneforge.data.prepare import prepared_dir

    d = prepared_dir(run.dataset)
    val = Path(run_dir) / VAL_SUBSET if n is not None and run_dir is not None else d / "val.jsonl"
    return {"train": d / "train.jsonl", "val": val, "val_rows": None}


def _precision(run: RunConfig, cpu: bool) -> dict[str, Any]:
    mp = run.hparams.mixed_precision
    if cpu or mp == "no":
        return {"bf16": False, "fp16": False, "tf32": False}
    if mp == "bf16":
        return {"bf16": True, "fp16": False, "tf32": True}
    if mp == "fp16":
        return {"bf16": False, "fp16": True, "tf32": True}
    return {"bf16": "auto", "tf32": "auto"}  # bf16 where the GPU has it (as the native backend's "auto")


def _dtype_problems(run: RunConfig) -> Iterable[str]:
    """axolotl has no load-dtype key: it loads the base in its training precision. (On CPU it trains in fp32
    whatever the dtype; the plan says so, and a GPU recipe must still plan on a CPU machine.)"""
    dtype, mp = run.model.dtype, run.hparams.mixed_precision
    half = {"bfloat16": "bf16", "float16": "fp16"}
    if dtype in half and (mp == "no" or (mp in half.values() and mp != half[dtype])):
        precision = f"hparams.mixed_precision={mp}"
        yield (f"model.dtype={dtype}: axolotl loads the base in its training precision, here {precision}; set "
               f"model.dtype to match (or auto), or choose the precision with hparams.mixed_precision")


def _chat_template(run: RunConfig) -> dict[str, Any]:
    name = run.model.chat_template
    if name == "tokenizer_default":
        return {"chat_template": "tokenizer_default"}
    from tuneforge.models import CHAT_TEMPLATES

    # tuneforge's own template text (with {% generation %} markers), so both backends format identically
    return {"chat_template": "jinja", "chat_template_jinja": CHAT_TEMPLATES[name]}


def _adapter(run: RunConfig) -> dict[str, Any]:
    from tuneforge.strategies.registry import get_strategy

    m = run.method
    if not get_strategy(run).uses_adapter:
        return {}
    q = m.quantization  # bits: only a quantizing method accepts them (the strategies refuse the others)
    out: dict[str, Any] = {}
    if q.bits == 4:
        out.update({
            "adapter": "qlora",
            "load_in_4bit": True,
            # axolotl's defaults are nf4 + double quant + bf16 storage; say ours so both backends load alike
            "bnb_config_kwargs": {
                "bnb_4bit_quant_type": q.quant_type,
                "bnb_4bit_use_double_quant": q.double_quant,
                "bnb_4bit_compute_dtype": q.compute_dtype,
                "bnb_4bit_quant_storage": q.compute_dtype,
            },
        })
    elif q.bits == 8:
        out.update({"adapter": "lora", "load_in_8bit": True})  # axolotl's qlora is 4-bit only
    else:
        out["adapter"] = "lora"
    out.update({
        "lora_r": m.r,
        "lora_alpha": m.alpha,
        "lora_dropout": m.dropout,
        "lora_target_modules": list(m.target_modules),
    })
    if m.modules_to_save:
        out["lora_modules_to_save"] = list(m.modules_to_save)
    if m.use_rslora:
        out["peft_use_rslora"] = True
    if m.layers_to_transform is not None:
        from tuneforge.estimate import known_layer_count
        from tuneforge.strategies.registry import adapted_layers

        out["peft_layers_to_transform"] = adapted_layers(m.layers_to_transform, known_layer_count(run))
    return out


def build_axolotl_config(run: RunConfig, run_dir: Path, *, base_model: str | None = None,
                         data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The axolotl YAML (as a dict) for this run. Pure: no torch, no axolotl, no file access."""
    from tuneforge.distributed.deepspeed import DS_CONFIG_NAME, uses_deepspeed

    h, o, m, b = run.hparams, run.optim, run.model, run.backend
    cpu = on_cpu(run)
    data = data or data_paths(run, run_dir=Path(run_dir))
    run_dir = Path(run_dir)
    dataset = {"path": str(data["train"]), "ds_type": "json", "type": "chat_template",
               "field_messages": "messages", "split": "train"}
    if not b.train_on_inputs:  # the loss covers assistant turns and their end-of-turn token, for any template
        dataset.update(roles_to_train=["assistant"], train_on_eos="turn")
    cfg: dict[str, Any] = {
        "base_model": base_model or model_path(run),
        "model_type": "AutoModelForCausalLM",
        "tokenizer_type": "AutoTokenizer",
        "trust_remote_code": m.trust_remote_code,
    }
    if m.revision:
        cfg["revision_of_model"] = m.revision
    if m.tokenizer:
        cfg["tokenizer_config"] = m.tokenizer
    cfg.update(_adapter(run))
    cfg.update({
        "datasets": [dataset],
        **_chat_template(run),
        "train_on_inputs": b.train_on_inputs,
        "dataset_prepared_path": b.dataset_prepared_path or str(run_dir / "axolotl_prepared"),
        "sequence_len": h.seq_len,
        "sample_packing": h.packing,
        "eval_sample_packing": False,  # small eval splits cannot fill packed bins
        "pad_to_sequence_len": h.packing,
        "micro_batch_size": h.micro_batch_size,
        "eval_batch_size": h.micro_batch_size,
        "gradient_accumulation_steps": h.grad_accumulation,
        "num_epochs": h.epochs,
        "optimizer": o.optimizer,
        "learning_rate": o.lr,
        "lr_scheduler": o.scheduler,
        "weight_decay": o.weight_decay,
        "max_grad_norm": o.max_grad_norm,
        "adam_beta1": o.adam_beta1,
        "adam_beta2": o.adam_beta2,
        "adam_epsilon": o.adam_epsilon,
        **_precision(run, cpu),
        "gradient_checkpointing": h.gradient_checkpointing,
        "dataloader_num_workers": h.dataloader_num_workers,
        "attn_implementation": m.attn_implementation,
        "seed": h.seed,
        "logging_steps": h.logging_steps,
        "include_tokens_per_second": True,  # the Trainer counts input tokens: metrics.jsonl's tokens/tokens_per_s
        "save_strategy": "steps" if h.save_steps else "no",
        "save_total_limit": h.save_total_limit,
        "save_safetensors": True,
        "output_dir": str(run_dir / "checkpoints"),
        # axolotl's auto-resume takes the highest-numbered checkpoint, torn or not: the plugin resumes from the
        # latest *complete* one instead (tuneforge.checkpoints), as the native backend does
        "auto_resume_from_checkpoints": False,
        "plugins": [PLUGIN],
    })
    if h.max_steps > 0:
        cfg["max_steps"] = h.max_steps
    if o.warmup_steps:
        cfg["warmup_steps"] = o.warmup_steps
    else:
        cfg["warmup_ratio"] = o.warmup_ratio
    if h.save_steps:
        cfg["save_steps"] = h.save_steps
    if run.dataset.split.val > 0 and data.get("val_rows") != 0:
        cfg["test_datasets"] = [{**dataset, "path": str(data["val"])}]
        cfg["val_set_size"] = 0.0
        cfg["eval_strategy"] = "steps" if h.eval_steps else "no"
        if h.eval_steps:
            cfg["eval_steps"] = h.eval_steps
    else:
        cfg["val_set_size"] = 0.0
        cfg["eval_strategy"] = "no"
    if b.dataset_processes:
        cfg["dataset_processes"] = b.dataset_processes
    if uses_deepspeed(run):
        cfg["deepspeed"] = str(run_dir / DS_CONFIG_NAME)
    if cpu:
        # axolotl auto-enables fused LoRA kernels that allocate on CUDA; off on CPU (checked on axolotl 0.19)
        cfg.update({"lora_mlp_kernel": False, "lora_qkv_kernel": False, "lora_o_kernel": False,
                    "lora_embedding_kernel": False})
    t = run.tracking
    if t.name == "wandb":
        cfg.update({"wandb_project": t.project, "wandb_mode": t.mode, "wandb_name": run.name})
        if t.entity:
            cfg["wandb_entity"] = t.entity
    elif t.name == "tensorboard":
        cfg["use_tensorboard"] = True
    if run.objective.is_preference:  # rl: dpo|ipo|simpo on the prepared pairs (tuneforge.backends.axolotl_rl)
        from tuneforge.backends.axolotl_rl import rl_settings

        cfg.update(rl_settings(run, {k: v for k, v in data.items() if k != "val" or "test_datasets" in cfg}))
    from tuneforge.backends.escape_hatch import merge_hatch  # a hatch `plugins` list extends tuneforge's

    return merge_hatch(cfg, dict(b.additional_parameters))
