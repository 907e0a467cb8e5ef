"""For ``plan``: the prepared data's sizes, tokens and cost if ``make data`` has run (no torch, no work)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tuneforge.data.stats import cost_epochs, openai_cost

if TYPE_CHECKING:
    from tuneforge.schema.run import RunConfig

REPORT_VERSION = 1
_SHOW_PER_RULE = 10


def plan_notes(run: RunConfig) -> list[str]:
    """For ``plan``: the prepared data's sizes, tokens and cost if ``make data`` has run (no torch, no work)."""
    from tuneforge.data.prepare import prepared_dir, source_path, tokens_key

    try:
        if not source_path(run.dataset).is_file():
            return [f"dataset {run.dataset.name}: source {run.dataset.path} not found"]
        d = prepared_dir(run.dataset)
        path = d / f"report-tokens-{tokens_key(run)}.json"
        if not path.is_file():
            return []  # plan's verdict shows an estimate and says how to count them
        report = json.loads(path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 (a plan must not fail on a notes problem)
        return [f"dataset {run.dataset.name}: no data stats ({type(exc).__name__}: {exc})"]
    tok = report["tokens"]
    notes = [f"dataset {report['dataset']}: " + " / ".join(f"{k} {v}" for k, v in report["splits"].items())
             + f" examples; tokens {' / '.join(str(v['total']) for v in tok['per_split'].values())}; "
             f"{tok['over_seq_len']} over seq_len {tok['seq_len']}; lint: {report['status']}"]
    cost = openai_cost(tok["per_split"]["train"]["total"], cost_epochs(run.hparams))
    notes.append(f"OpenAI fine-tuning cost of the train split ({cost['train_tokens']:,} tokens x {cost['epochs']:g} "
                 f"epochs, prices as of {cost['as_of']}): "
                 + ", ".join(f"{model} ${usd:,.2f}" for model, usd in cost["usd"].items()))
    return notes


def batch_warnings(run: RunConfig) -> list[str]:
    """A batch larger than the train split (micro batch alone, or micro batch x grad accumulation x processes):
    every step is the whole split, and the numbers the user chose are not the ones that run. Read from the
    prepared data's report (``train`` prepares it first; ``plan`` once `make data` has run)."""
    from tuneforge.data.prepare import prepared_dir, source_path

    try:
        if not source_path(run.dataset).is_file():
            return []
        report = prepared_dir(run.dataset) / "report.json"
        if not report.is_file():
            return []
        n = int(json.loads(report.read_text(encoding="utf-8"))["splits"]["train"])
    except Exception:  # noqa: BLE001 (a plan must not fail on a warning's data)
        return []
    h = run.hparams
    devices = run.launcher.resources().world_size
    per_step = h.micro_batch_size * h.grad_accumulation * devices
    where = f"the train split of dataset {run.dataset.name} has {n} examples"
    if h.micro_batch_size > n:
        return [f"hparams.micro_batch_size={h.micro_batch_size} exceeds the train split: {where}, so every step "
                f"trains on all {n} as one batch; lower hparams.micro_batch_size (at most {n})"]
    if per_step > n:
        return [f"one optimizer step takes hparams.micro_batch_size={h.micro_batch_size} x hparams.grad_accumulation="
                f"{h.grad_accumulation} x {devices} device(s) = {per_step} examples, more than the train split: "
                f"{where}, so an epoch is less than one full step; lower hparams.grad_accumulation or "
                "hparams.micro_batch_size"]
    return []
