"""Counterfactual RAG faithfulness: does the answer carry the retrieved value, or the one the model was trained on?

For each held-out question whose reference answer carries a checkable value of a kind that changes over time
(a price, a distance, an hour; tuneforge.data.passages.COUNTERFACTUAL_KINDS), the passage that supports the
answer is found (the one holding most of those values) and every such value in it is changed: a price x1.5
rounded up to 5.000 đồng (x1.4: ranges keep their order), a distance +50% (at least +3 km), an hour +2;
every value of those kinds in the passage changes, and none becomes a number the passage or answer already had. The changed passage goes first in the
retrieved block (the other retrieved passages follow as distractors), and the answer is classified:

Values are compared with their unit's kind (25.000 đồng is not 25 km; "25.000đ" is 25.000 đồng):

- ``passage``: it carries a changed value and none of the trained ones (faithful to the context);
- ``trained``: it carries a trained value and none of the changed ones (the training data won);
- ``both``: it carries both; ``neither``: it carries none.

The faithfulness rate is ``passage`` over all cases (0-100).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tuneforge.data.passages import COUNTERFACTUAL_KINDS, Passage, normalize_number, value_keys, values

CLASSES = ("passage", "trained", "both", "neither")


@dataclass(frozen=True)
class Case:
    index: int  # of the held-out example
    passage_id: str
    passage: str  # the changed passage
    trained: tuple[tuple[str, str], ...]  # (normalized number, kind) as in the training data
    changed: tuple[tuple[str, str], ...]  # (normalized number, kind) as in the changed passage


def _format_like(n: float, written: str) -> str:
    """``n`` written like ``written``: thousands grouped with "." when the original grouped them."""
    if re.search(r"[.,]\d{3}(?!\d)", written) or (n >= 10000 and not re.search(r"[.,]", written)):
        return f"{int(n):,}".replace(",", ".")
    return str(int(n)) if float(n).is_integer() else str(n)


def changed_number(number: str, kind: str) -> float:
    n = float(number)
    if kind == "price":
        return max(5000.0, math.ceil(n * 1.4 / 5000) * 5000) if n >= 1000 else n * 2
    if kind == "distance":
        return n + max(3, round(n * 0.5))
    return (n + 2) % 24 if kind == "hour" else n + 1


def counterfactual(passage: Passage, reference: str, index: int) -> Case | None:
    """The changed passage for one held-out answer, or None when they share no value of a changing kind."""
    ref = {k for k in value_keys(reference) if k[1] in COUNTERFACTUAL_KINDS}
    if not any((v.number, v.kind) in ref for v in values(passage.text)):
        return None
    hits = [v for v in values(passage.text) if v.kind in COUNTERFACTUAL_KINDS]
    taken = {n for n, _ in value_keys(passage.text) | value_keys(reference)}
    mapping: dict[tuple[str, str], str] = {}
    for v in hits:
        if (v.number, v.kind) not in mapping:
            new = changed_number(v.number, v.kind)
            step = 5000 if v.kind == "price" and new >= 5000 else 1
            while normalize_number(_format_like(new, v.written)) in taken:
                new += step
            mapping[(v.number, v.kind)] = _format_like(new, v.written)
            taken.add(normalize_number(mapping[(v.number, v.kind)]))
    text = passage.text
    for v in sorted(hits, key=lambda v: -v.start):
        text = text[:v.start] + mapping[(v.number, v.kind)] + text[v.end:]
    return Case(index, passage.id, text, tuple(sorted(mapping)),
                tuple(sorted({(normalize_number(x), k[1]) for k, x in mapping.items()})))


def supporting_passage(reference: str, passages: list[Passage]) -> Passage | None:
    """The passage holding most of the reference's changing values (ties: the first)."""
    ref = {k for k in value_keys(reference) if k[1] in COUNTERFACTUAL_KINDS}
    if not ref:
        return None
    best = max(passages, key=lambda p: len(ref & value_keys(p.text)))
    return best if ref & value_keys(best.text) else None


def build_cases(references: list[str], passages: list[Passage]) -> list[Case]:
    out = []
    for i, ref in enumerate(references):
        p = supporting_passage(ref, passages)
        case = counterfactual(p, ref, i) if p is not None else None
        if case is not None:
            out.append(case)
    return out


def classify(answer: str, case: Case) -> str:
    got = value_keys(answer)
    new, old = bool(got & set(case.changed)), bool(got & set(case.trained))
    return "both" if new and old else "passage" if new else "trained" if old else "neither"


def faithfulness_record(cases: list[Case], answers: list[str], questions: list[str]) -> dict[str, Any]:
    """One RAG arm's faithfulness: the rate, the count per class, each case with its answer."""
    labels = [classify(a, c) for a, c in zip(answers, cases)]
    counts = {k: labels.count(k) for k in CLASSES}
    return {"n": len(cases), "rate": 100.0 * counts["passage"] / len(cases) if cases else None, "counts": counts,
            "cases": [{"question": questions[c.index], "passage_id": c.passage_id, "trained": [f"{n} {k}" for n, k in c.trained],
                       "changed": [f"{n} {k}" for n, k in c.changed], "answer": a, "carries": lab}
                      for c, a, lab in zip(cases, answers, labels)]}
