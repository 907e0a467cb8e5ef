"""Counterfactual RAG faithfulness: does the answer carry the retrieved value, or the one the model was trained on?

For each held-out question whose reference answer carries a checkable value of a kind that changes over time
(a price, a distance, an hour; tuneforge.data.passages.COUNTERFACTUAL_KINDS), the passage that supports the
answer is found (the one holding most of those values) and its values are changed (tuneforge.data.counterfactual).
The changed passage goes first in the retrieved block (the other retrieved passages follow as distractors),
and the answer is classified.

Values are compared with their unit's kind (25.000 đồng is not 25 km; "25.000đ" is 25.000 đồng):

- ``passage``: it carries a changed value and none of the trained ones (faithful to the context);
- ``trained``: it carries a trained value and none of the changed ones (the training data won);
- ``both``: it carries both; ``neither``: it carries none.

The faithfulness rate is the ``passage`` answers that are also usable over all cases (0-100): the eval's
answer review, with the changed passages as a source of right values beside the reference. A model that echoes
the passage back, a garbled answer that happens to hold the number, or one that puts the changed price on
another dish ("một nồi lẩu … khoảng 25.000–45.000 đồng" for the bánh tráng question) carries the value but
does not answer.

``stated``: the answers that name one of the case's values at all (``passage``, ``trained`` or ``both``), and
``wins_when_stated``, the share of them naming only the passage's: when the answer gives a price, is it the
retrieved one? An answer that names none (an itinerary without its prices) counts against ``rate`` only.

``by_passage``: the cases grouped by the passage that was changed, with how many of each are faithful. The
held-out split keeps a question's paraphrases together, so 26 cases may be 7 questions asked several ways:
``passages`` says how many distinct facts the rate is measured on.
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.counterfactual import Case, build_cases, counterfactual, supporting_passage
from tuneforge.data.passages import value_keys

__all__ = ["Case", "build_cases", "counterfactual", "supporting_passage", "classify", "faithfulness_record"]

CLASSES = ("passage", "trained", "both", "neither")


def classify(answer: str, case: Case) -> str:
    got = value_keys(answer)
    new, old = bool(got & set(case.changed)), bool(got & set(case.trained))
    return "both" if new and old else "passage" if new else "trained" if old else "neither"


def faithfulness_record(cases: list[Case], answers: list[str], questions: list[str],
                        reasons: list[list[str]]) -> dict[str, Any]:
    """One RAG arm's faithfulness: the rate, the count per class, each case with its answer.

    ``reasons``: per answer, why the answer review finds it unusable (empty: usable). A ``passage`` answer
    counts toward the rate only when it is usable (``passage_unusable`` counts the others)."""
    labels = [classify(a, c) for a, c in zip(answers, cases)]
    counts = {k: labels.count(k) for k in CLASSES}
    faithful = sum(lab == "passage" and not r for lab, r in zip(labels, reasons))
    stated = len(cases) - counts["neither"]
    by_passage: dict[str, dict[str, int]] = {}
    for c, lab, r in zip(cases, labels, reasons):
        group = by_passage.setdefault(c.passage_id, {"n": 0, "faithful": 0})
        group["n"] += 1
        group["faithful"] += lab == "passage" and not r
    return {"n": len(cases), "rate": 100.0 * faithful / len(cases) if cases else None, "counts": counts,
            "passage_unusable": counts["passage"] - faithful, "stated": stated,
            "wins_when_stated": 100.0 * counts["passage"] / stated if stated else None,
            "passages": len(by_passage), "by_passage": by_passage,
            "cases": [{"question": questions[c.index], "passage_id": c.passage_id,
                       "trained": [f"{n} {k}" for n, k in c.trained], "changed": [f"{n} {k}" for n, k in c.changed],
                       "answer": a, "carries": lab, "usable": not r, "reasons": r}
                      for c, a, lab, r in zip(cases, answers, labels, reasons)]}
