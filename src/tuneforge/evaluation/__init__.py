"""Evaluation of a finished run on its held-out test split, base model vs fine-tuned, and the A/B report.

Everything here reads only the run directory (layout in :mod:`tuneforge.rundir`), never the backend, so
native and axolotl runs are evaluated the same way:

    artifacts.py   open a run directory, check and load its adapter / full model (shared with merge and chat)
    metrics.py     exact match, BLEU, chrF, ROUGE-L
    runner.py      loss/perplexity on assistant tokens + batched generation -> eval.json
    report.py      report.md and a self-contained report.html (metrics table, samples, loss curves)

Nothing at this level imports torch (``plan`` and config validation import :func:`check_eval`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # schema.py imports evaluation.config, which runs this __init__ first
    from tuneforge.config.schema import RunConfig
    from tuneforge.evaluation.config import EvalConfig


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


def evaluate_run(run_dir: Path | str, **kwargs: Any) -> dict[str, Any]:
    """Evaluate base vs fine-tuned on the test split; writes eval.json, report.md, report.html. See runner."""
    from tuneforge.evaluation.runner import evaluate_run as _evaluate_run

    return _evaluate_run(Path(run_dir), **kwargs)
