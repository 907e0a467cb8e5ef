"""The native backend's preference objectives: TRL's DPOTrainer (DPO, IPO, hinge, robust), its CPO trainer with
the SimPO loss, ORPOTrainer and KTOTrainer, each with the run's strategy (LoRA/QLoRA adapter or full weights).

This module is the only place that maps an objective onto a TRL trainer.

The reference model is the starting weights: the base, or ``init.run``'s weights (its adapter merged into
the base before the new adapter is added). With an adapter TRL loads no second model: the reference is the
same network with the adapter switched off, which is exactly the starting weights because the parent's
adapter was merged in. A full fine-tune gets a frozen copy (TRL makes it), or, with
``objective.reference=precomputed``, the reference log-probs are computed once before training.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuneforge.schema.run import RunConfig
from tuneforge.strategies.registry import get_strategy

# TRL 1.9's preference configs cut only the whole sequence (max_length); prompt/completion limits are gone
_NO_SPLIT_LENGTHS = "the installed TRL truncates the whole sequence only (max_length = hparams.seq_len)"


def check_preference(run: RunConfig) -> Iterable[str]:
    """What the native backend cannot honour for a preference objective: refused, never dropped."""
    o = run.objective
    if not o.is_preference:
        return
    for key in ("max_prompt_length", "max_completion_length"):
        if getattr(o, key) is not None:
            yield f"objective.{key}={getattr(o, key)} has no effect with backend=native: {_NO_SPLIT_LENGTHS}"
    if run.hparams.packing:
        yield (f"hparams.packing=true with objective={o.name}: preference trainers score whole (prompt, answer) "
               "sequences and cannot pack them; set hparams.packing=false")
    if o.reference == "precomputed" and get_strategy(run).uses_adapter:
        yield (f"objective.reference=precomputed with method={run.method.name}: the reference is the same model "
               "with its adapter off, so nothing is saved by precomputing; leave objective.reference=init")


def starting_model(run: RunConfig, *, quantization_config: Any = None, device_map: Any = None) -> Any:
    """The weights a run starts from: the base, or ``init.run``'s result merged into its base."""
    from tuneforge.models import load_model

    if run.init.run is None:
        return load_model(run, quantization_config=quantization_config, device_map=device_map)
    return merged_parent(Path(run.init.run)).train()


def merged_parent(run_dir: Path) -> Any:
    """A finished run's weights as one plain model: its adapter merged into its base (the base being its own
    parent's merged weights when it has one), or its full model. What ``init.run=<run_dir>`` starts from, and
    the base eval, merge and chat put a chained run's adapter on."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.models import load_model, torch_dtype
    from tuneforge.rundir import read_config, weights_dir

    parent = read_config(run_dir)
    weights = weights_dir(run_dir)
    if weights.name == "model":
        return AutoModelForCausalLM.from_pretrained(str(weights), dtype=torch_dtype(parent))
    base = merged_parent(Path(parent.init.run)) if parent.init.run else load_model(parent)
    return PeftModel.from_pretrained(base, str(weights)).merge_and_unload()


def _data(run: RunConfig) -> tuple[Any, Any]:
    from datasets import load_dataset

    from tuneforge.data.prepare import prepare_splits

    data = prepare_splits(run.dataset)
    files = {"train": str(data.train)}
    if data.sizes.get("val"):
        files["validation"] = str(data.val)
    ds = load_dataset("json", data_files=files)
    ds = ds.remove_columns([c for c in ("category", "line") if c in ds["train"].column_names])
    if run.objective.name == "kto" and "chosen" in ds["train"].column_names:
        from trl.data_utils import unpair_preference_dataset  # each pair -> one desirable + one undesirable row

        ds = unpair_preference_dataset(ds)
    val = ds.get("validation")
    if val is not None and run.hparams.max_eval_samples is not None:
        val = val.select(range(min(run.hparams.max_eval_samples, len(val))))
    return ds["train"], val


def trainer_class_and_args(run: RunConfig, common: dict[str, Any]) -> tuple[type, Any]:
    """The TRL trainer class and its config for ``run.objective`` (the one objective -> trainer map)."""
    o = run.objective
    if o.name == "dpo" and o.loss == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOTrainer, CPOConfig(**common, loss_type="simpo", cpo_alpha=o.sft_weight,
                                     simpo_gamma=o.simpo_gamma)
    if o.name == "dpo":
        from trl import DPOConfig, DPOTrainer

        loss_type, loss_weights = o.dpo_losses  # sft_weight > 0: TRL's multi-loss DPO (RPO)
        losses = {"loss_type": loss_type, "loss_weights": loss_weights} if o.sft_weight else {"loss_type": loss_type}
        return DPOTrainer, DPOConfig(**common, **losses,
                                     precompute_ref_log_probs=o.reference == "precomputed")
    if o.name == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig(**common)
    if o.name == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig(**common, loss_type=o.loss,
                                     precompute_ref_log_probs=o.reference == "precomputed")
    raise ValueError(f"objective={o.name} is not a preference objective")


def build_preference_trainer(run: RunConfig, run_dir: Path, callbacks: list, verbose: bool) -> tuple[Any, Any]:
    import os
    import warnings

    import torch
    from transformers import set_seed

    from tuneforge.backends.hf_trainer import trainer_arguments
    from tuneforge.models import load_tokenizer
    from tuneforge.strategies.registry import get_strategy
    from tuneforge.tracking.trackers import tracking_callbacks

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    strategy = get_strategy(run)
    train, val = _data(run)
    tokenizer = load_tokenizer(run)
    quant = strategy.quantization_config(run)
    device_map = None
    if quant is not None:
        device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))} if torch.cuda.is_available() else {"": "cpu"}
    model = starting_model(run, quantization_config=quant, device_map=device_map)
    model.config.use_cache = False
    set_seed(run.hparams.seed)
    model = strategy.build(run, model)
    common = dict(**trainer_arguments(run, run_dir, evaluate=val is not None), beta=run.objective.beta,
                  max_length=run.hparams.seq_len, gradient_checkpointing=run.hparams.gradient_checkpointing,
                  disable_tqdm=not verbose, **run.backend.additional_parameters)
    trainer_cls, args = trainer_class_and_args(run, common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TRL's notes on padding/truncation defaults
        trainer = trainer_cls(model=model, args=args, train_dataset=train, eval_dataset=val,
                              processing_class=tokenizer,
                              callbacks=[*callbacks, *tracking_callbacks(run, run_dir)])
    reference_with_adapter_off(trainer.model)
    return trainer, tokenizer


def reference_with_adapter_off(model: Any) -> None:
    """TRL (1.9) gives a PEFT policy without ``ref_model`` a frozen copy of its adapter, named "ref", as the
    reference. For a fresh adapter (B = 0) that copy computes the starting weights, so it is only memory; for
    a trained adapter being scored (eval) it would make policy == reference. Without it TRL switches the
    adapters off for the reference forward: the starting weights, with no copy."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and "ref" in model.peft_config:
        model.delete_adapter("ref")
        model.set_adapter("default")
