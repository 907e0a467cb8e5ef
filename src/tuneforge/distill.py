"""``tuneforge data distill endpoint=<base_url> model=<name> [dataset=NAME] [split=train] [max_examples=N]``

Answers a dataset's prompts with any OpenAI-compatible model (an OpenAI ``ft:`` model before its base is
retired, ``tuneforge serve``, vLLM, ...) and writes a chat dataset an open model can be trained on:
``dataset.path=<out>``. The way off OpenAI's fine-tuning: the hosted model's behaviour, carried as data.

1. The cost is estimated first (prompt tokens counted with the model's tokenizer family, answers bounded by
   ``eval.max_new_tokens``) and gated: above ``max_cost_usd`` it stops unless ``--yes``. Prices: OpenAI's
   list prices for the models in ``PRICES``, nothing for a server on this machine, otherwise
   ``usd_per_1m_input=`` / ``usd_per_1m_output=`` must be given.
2. Each conversation's last assistant turn is replaced by the model's answer, through the hosted eval's request
   code (:func:`~tuneforge.evaluation.hosted.hosted_answers`: same decoding, same seed).
3. Every answer goes through the eval's answer review (empty, loop, off topic, cut off, wrong language, the
   dataset's style checks, the fact guard); the rejected ones go to ``<out>.rejected.jsonl`` with reasons.
4. The kept file is linted by the data pipeline (format, roles, fact guard) like any source file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tuneforge.errors import ConfigError, DataError

# USD per 1M tokens, (input, output) of the base model and of a model fine-tuned from it
PRICES = {"gpt-4o-mini": ((0.15, 0.60), (0.30, 1.20)), "gpt-4o": ((2.50, 10.0), (3.75, 15.0)),
          "gpt-4.1-mini": ((0.40, 1.60), (0.80, 3.20)), "gpt-4.1": ((2.00, 8.00), (3.00, 12.0))}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def prices(model: str, endpoint: str, usd_in: float | None, usd_out: float | None) -> tuple[float, float, str]:
    if usd_in is not None and usd_out is not None:
        return usd_in, usd_out, "given"
    tuned = model.startswith("ft:")
    base = model.split(":")[1] if tuned else model  # ft:gpt-4o-mini-2024-07-18:org::id
    for name in sorted(PRICES, key=len, reverse=True):
        if base == name or base.startswith(name + "-"):
            return (*PRICES[name][tuned], f"OpenAI list price of {'a fine-tuned ' if tuned else ''}{name}")
    if urlparse(endpoint).hostname in LOOPBACK:
        return 0.0, 0.0, "a server on this machine"
    raise ConfigError(f"no price known for model={model} at {endpoint}: give usd_per_1m_input= and "
                      "usd_per_1m_output= so the cost can be estimated before any request")


def _conversations(path: Path, limit: int | None) -> list[list[dict]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            msgs = json.loads(line)["messages"]
            last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
            if last:
                rows.append(msgs[: last + 1])
            if limit is not None and len(rows) >= limit:
                break
    return rows


def distill(overrides: list[str], endpoint: str, model: str, *, split: str = "train", max_examples: int | None = None,
            out: Path | None = None, max_cost_usd: float = 5.0, usd_in: float | None = None,
            usd_out: float | None = None, yes: bool = False, key_env: str | None = None) -> dict[str, Any]:
    from tuneforge.backends.openai_data import encoder_for, example_tokens
    from tuneforge.config.compose import load_run_config
    from tuneforge.data.pipeline import run_pipeline
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.evaluation.answer_checks import review_answers
    from tuneforge.evaluation.endpoint import endpoint_client
    from tuneforge.evaluation.hosted import hosted_answers
    from tuneforge.rundir import atomic_write_json

    t0 = time.perf_counter()
    run = load_run_config(overrides, command="data distill")
    data = prepare_splits(run.dataset)
    source = Path({"train": data.train, "val": data.val, "test": data.test}[split])
    convs = _conversations(source, max_examples)
    if not convs:
        raise DataError(f"{source}: no conversation with an assistant turn to distill")
    cfg = run.eval
    enc = encoder_for("gpt-4o-mini")  # o200k: OpenAI's current models; an estimate for any other tokenizer
    tokens_in = sum(example_tokens(enc, c[:-1]) for c in convs)
    tokens_out = len(convs) * cfg.max_new_tokens
    p_in, p_out, basis = prices(model, endpoint, usd_in, usd_out)
    cost = tokens_in / 1e6 * p_in + tokens_out / 1e6 * p_out
    print(f"tuneforge data distill: {len(convs)} {split} conversations of {run.dataset.name} -> {model} at {endpoint}\n"
          f"  estimate    {tokens_in} prompt tokens + at most {tokens_out} answer tokens = ${cost:.4f} "
          f"(${p_in}/${p_out} per 1M: {basis}); limit max_cost_usd={max_cost_usd}", flush=True)
    if cost > max_cost_usd and not yes:
        raise ConfigError(f"estimated ${cost:.2f} > max_cost_usd={max_cost_usd}: nothing was sent; raise "
                          "max_cost_usd=, lower max_examples=, or add --yes")
    client = endpoint_client(endpoint, key_env)
    got = hosted_answers(client, model, [c[:-1] for c in convs], cfg, run.hparams.seed, "distill")
    answers = [a for a, _ in got]
    prompts = [next((m["content"] for m in reversed(c[:-1]) if m["role"] == "user"), "") for c in convs]
    review = review_answers(run.dataset, answers, references=[c[-1]["content"] for c in convs], prompts=prompts,
                            new_tokens=[n for _, n in got], max_new_tokens=cfg.max_new_tokens)
    out = out or Path("outputs") / "distill" / f"{run.dataset.name}-{model.replace(':', '_').replace('/', '_')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    rejected_path = out.with_suffix(".rejected.jsonl")
    with out.open("w", encoding="utf-8") as keep, rejected_path.open("w", encoding="utf-8") as rej:
        for c, a, ok, why in zip(convs, answers, review["usable"], review["reasons"], strict=True):
            row = {"messages": [*c[:-1], {"role": "assistant", "content": a}]}
            if ok:
                keep.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                rej.write(json.dumps({**row, "reasons": why}, ensure_ascii=False) + "\n")
    lint = run_pipeline(run.dataset, out, None, fmt="chat", augment=False)
    summary = {"endpoint": endpoint, "model": model, "dataset": run.dataset.name, "split": split,
               "n": len(convs), "kept": review["n_usable"], "rejected": len(convs) - review["n_usable"],
               "reject_reasons": review["reason_counts"], "lint_exit_status": lint.exit_status,
               "lint_counts": lint.counts, "estimate_usd": round(cost, 4), "price_basis": basis,
               "tokens_in_estimate": tokens_in, "out": str(out), "rejected_file": str(rejected_path),
               "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out.with_suffix(".json"), summary)
    print(f"  answers     {summary['kept']} kept, {summary['rejected']} rejected {review['reason_counts'] or ''}\n"
          f"  lint        exit status {lint.exit_status} (0 clean, 1 warnings, 2 errors) on {out}\n"
          f"  train on it tuneforge train recipe=lora-gemma3 dataset={run.dataset.name} dataset.path={out} "
          "dataset.format=chat")
    return summary


def cmd_distill(args: list[str]) -> int:
    yes = "--yes" in args
    opts: dict[str, str] = {}
    overrides: list[str] = []
    own = ("endpoint", "model", "split", "max_examples", "out", "max_cost_usd", "usd_per_1m_input",
           "usd_per_1m_output", "api_key_env")
    for a in (a for a in args if a != "--yes"):
        key, sep, value = a.partition("=")
        if not sep:
            raise ConfigError(f"tuneforge data distill: expected key=value, got {a!r}")
        (opts.__setitem__(key, value) if key in own else overrides.append(a))
    for key in ("endpoint", "model"):
        if not opts.get(key):
            raise ConfigError(f"tuneforge data distill: {key}= is required (endpoint=<base_url> model=<name>)")
    if opts.get("split", "train") not in ("train", "val", "test"):
        raise ConfigError(f"split={opts['split']!r} is not one of: train, val, test")

    def num(key: str) -> float | None:
        try:
            return float(opts[key]) if key in opts else None
        except ValueError:
            raise ConfigError(f"{key}={opts[key]!r} is not a number") from None

    limit = num("max_examples")
    summary = distill(overrides, opts["endpoint"].rstrip("/"), opts["model"], split=opts.get("split", "train"),
                      max_examples=int(limit) if limit else None,
                      out=Path(opts["out"]) if opts.get("out") else None,
                      max_cost_usd=5.0 if num("max_cost_usd") is None else float(num("max_cost_usd") or 0),
                      usd_in=num("usd_per_1m_input"),
                      usd_out=num("usd_per_1m_output"), yes=yes, key_env=opts.get("api_key_env"))
    return 0 if summary["kept"] and summary["lint_exit_status"] < 2 else 2
