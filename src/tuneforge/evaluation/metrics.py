"""Generation metrics on (prediction, reference) pairs, all on a 0-100 scale.

ROUGE-L uses a Unicode word tokenizer: rouge-score's default one keeps only [a-z0-9], which would erase
most of a Vietnamese or Chinese answer and score every pair near zero.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    fmt: str = "{:.2f}"


# the order of the report's table
METRICS = (
    Metric("usable_rate", "Usable answers (%)", True, "{:.0f}"),
    Metric("loss", "Test loss (assistant tokens)", False, "{:.4f}"),
    Metric("perplexity", "Perplexity", False, "{:.2f}"),
    Metric("exact_match", "Exact match (%)", True, "{:.1f}"),
    Metric("bleu", "BLEU", True),
    Metric("chrf", "chrF", True),
    Metric("rouge_l", "ROUGE-L F1", True),
    Metric("style_rate", "Style checks passed (%)", True, "{:.0f}"),
    Metric("forbidden_claims", "Forbidden claims (fact guard)", False, "{:.0f}"),
    Metric("avg_new_tokens", "Answer length (tokens)", True, "{:.1f}"),
)
# metrics that say whether the model got better (answer length is shown, not judged)
JUDGED = tuple(m for m in METRICS if m.key != "avg_new_tokens")


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


class UnicodeWordTokenizer:
    """rouge-score tokenizer protocol: ``tokenize(text) -> list[str]``."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", unicodedata.normalize("NFC", text).casefold())


def _defuse_absl_handler() -> None:
    """rouge-score imports absl, whose logging handler (created at import, attached to no logger) binds the
    ``sys.stderr`` of that moment and *closes* it when closed. Any later ``logging.config.dictConfig`` in the
    process (Hydra's job logging, axolotl's import) closes every handler, so the caller's stderr was closed
    under it (a notebook's, pytest's capture). Pointing the unused handler at the interpreter's own stderr,
    which absl never closes, keeps that from happening."""
    import sys

    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    handler = absl_logging.get_absl_handler().python_handler
    if handler.stream is not sys.__stderr__:
        handler.stream = sys.__stderr__


def generation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    import sacrebleu
    from rouge_score import rouge_scorer

    _defuse_absl_handler()

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {"exact_match": 0.0, "bleu": 0.0, "chrf": 0.0, "rouge_l": 0.0}
    exact = sum(normalize(p) == normalize(r) for p, r in zip(predictions, references))
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeWordTokenizer())
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return {
        "exact_match": 100.0 * exact / len(predictions),
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
        "rouge_l": 100.0 * sum(rouge) / len(rouge),
    }


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
