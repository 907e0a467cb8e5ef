"""Reward accuracy and mean reward margin on held-out preference pairs (eval of objective=dpo|orpo|kto runs).

The DPO implicit reward of an answer y to prompt x is ``beta * (log p_policy(y|x) - log p_ref(y|x))``; a pair
counts as right when the chosen answer's reward is above the rejected one's (a tie is wrong). TRL's
DPOTrainer computes exactly these (``rewards/accuracies``, ``rewards/margins``) in its evaluation loop; here it
runs with one pair per batch, so the mean over batches is the mean over pairs.

Two models are scored, each against its own reference, with an adapter on and off:

- the tuned run: policy = starting weights + its adapter, reference = the starting weights (adapter off);
- the starting model (``init.run``'s adapter run): policy = base + that adapter, reference = the base.
  Both ask "has this training moved probability towards the chosen answers?"; for the starting SFT run the
  answer measures what SFT alone already learned about the pairs.

Pairs: the run's prepared test split (held out of preference training, grouped by reference answer) and
``dataset.heldout`` (built from questions no stage trained on).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)


def generation_run(run: RunConfig) -> RunConfig:
    """The config whose test split and probes the generations are scored on: the parent's SFT data when the
    run starts from one (SFT vs SFT + preference tuning on the same questions), else the run's own pairs."""
    if not run.objective.is_preference or run.init.run is None:
        return run
    from tuneforge.rundir import read_config

    parent = read_config(Path(run.init.run))
    return dataclasses.replace(run, dataset=parent.dataset)


def pair_rows(run: RunConfig) -> dict[str, list[dict[str, Any]]]:
    """Held-out pairs by source: ``test`` (the prepared split) and ``heldout`` (dataset.heldout), TRL rows."""
    from tuneforge.data.prepare import prepare_splits, source_path

    out: dict[str, list[dict[str, Any]]] = {}
    data = prepare_splits(run.dataset)
    out["test"] = [json.loads(line) for line in Path(data.test).read_text(encoding="utf-8").splitlines()
                   if line.strip()]
    if run.dataset.heldout:
        from tuneforge.data.preference import read_preference

        ds = dataclasses.replace(run.dataset, path=run.dataset.heldout)
        rows, _, _ = read_preference(ds, source_path(ds), run.dataset.heldout)
        out["heldout"] = [r.to_trl() for r in rows]
    return {k: [r for r in v if "chosen" in r] for k, v in out.items() if v}


def reward_metrics(policy: Any, tokenizer: Any, run: RunConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """TRL's DPO evaluation of ``policy`` (a PEFT model: the reference is the same model, adapter off)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from tuneforge.backends.hf_trainer import mixed_precision

    ds = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    bf16, fp16 = mixed_precision(run)
    with tempfile.TemporaryDirectory(prefix="tf-reward-") as tmp:
        args = DPOConfig(output_dir=tmp, per_device_eval_batch_size=1, beta=run.objective.beta,
                         max_length=run.hparams.seq_len, report_to=[], bf16=bf16, fp16=fp16,
                         disable_tqdm=True, use_cpu=not _cuda())
        trainer = DPOTrainer(model=policy, args=args, train_dataset=ds, eval_dataset=ds,
                             processing_class=tokenizer)
        from tuneforge.backends.preference import reference_with_adapter_off

        reference_with_adapter_off(trainer.model)  # the reference: the same weights with the adapter off
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the numbers go to eval.json, not to stdout
        m = trainer.evaluate()
    return {"n": len(rows), "reward_accuracy": round(100.0 * m["eval_rewards/accuracies"], 2),
            "reward_margin": round(m["eval_rewards/margins"], 4),
            "reward_chosen": round(m["eval_rewards/chosen"], 4),
            "reward_rejected": round(m["eval_rewards/rejected"], 4)}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def preference_results(art: Any, tuned: Any, tokenizer: Any) -> dict[str, Any]:
    """eval.json's ``preference`` block (per model, per pair source) and its headline numbers."""
    from peft import PeftModel

    run = art.run
    sources = pair_rows(run)
    out: dict[str, Any] = {"beta": run.objective.beta, "pairs": {k: len(v) for k, v in sources.items()},
                           "tuned": {}, "starting": {}}
    if isinstance(tuned, PeftModel):
        for name, rows in sources.items():
            out["tuned"][name] = reward_metrics(tuned, tokenizer, run, rows)
    if run.init.run is not None:
        from tuneforge.evaluation.artifacts import attach_adapter, load_base, open_run

        parent = open_run(run.init.run)
        if parent.uses_adapter:
            start = attach_adapter(parent, load_base(parent))
            for name, rows in sources.items():
                out["starting"][name] = reward_metrics(start, tokenizer, run, rows)
            del start
    head = out["tuned"].get("heldout") or out["tuned"].get("test") or {}
    out["reward_accuracy"], out["reward_margin"] = head.get("reward_accuracy"), head.get("reward_margin")
    return out
