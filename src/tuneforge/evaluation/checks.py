"""Compose-time checks of the eval group (in tuneforge.config.validate.CHECKS); no torch."""

from __future__ import annotations

from collections.abc import Iterable

from tuneforge.schema.evaluation import LADDER_ARMS, EvalConfig
from tuneforge.schema.run import RunConfig


def check_eval(run: RunConfig) -> Iterable[str]:
    yield from check_eval_config(run.eval)


def check_eval_config(e: EvalConfig) -> Iterable[str]:
    for key in ("max_samples", "max_new_tokens", "batch_size"):
        if getattr(e, key) < 1:
            yield f"eval.{key}={getattr(e, key)} must be >= 1"
    if e.report_samples < 0:
        yield f"eval.report_samples={e.report_samples} must be >= 0"
    if not e.temperature > 0:
        yield f"eval.temperature={e.temperature} must be > 0 (use eval.do_sample=false for greedy decoding)"
    if not 0 < e.top_p <= 1:
        yield f"eval.top_p={e.top_p} must be in (0, 1]"
    if not e.repetition_penalty > 0:
        yield (f"eval.repetition_penalty={e.repetition_penalty} must be > 0 (1.0: no penalty; 1.1-1.3 discourages "
               "a model from repeating itself)")
    if e.no_repeat_ngram_size < 0:
        yield f"eval.no_repeat_ngram_size={e.no_repeat_ngram_size} must be >= 0 (0: off)"
    if e.split not in ("test", "val"):
        yield f"eval.split={e.split!r} is not valid; choose one of: test, val"
    if e.few_shot < 0:
        yield f"eval.few_shot={e.few_shot} must be >= 0"
    if e.retriever.k < 1:
        yield f"eval.retriever.k={e.retriever.k} must be >= 1"
    bad = [a for a in e.ladder_arms if a not in LADDER_ARMS]
    if bad or not e.ladder_arms:
        yield (f"eval.ladder_arms={list(e.ladder_arms)}: {', '.join(map(repr, bad)) or 'empty'} is not valid; "
               f"choose among: {', '.join(LADDER_ARMS)}")
