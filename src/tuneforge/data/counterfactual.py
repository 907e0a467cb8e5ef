"""Counterfactual passages: a passage whose changing values (price, distance, hour) differ from the training
data's, for the faithfulness measurement (tuneforge.evaluation.faithfulness) and the RAFT-style training rows
(tuneforge.data.rag_rows).

Every value of a changing kind in the passage changes: a price x1.4 rounded up to 5.000 đồng (ranges keep their
order), a distance +50% (at least +3 km), an hour +2; none becomes a number the passage or the answer already had.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tuneforge.data.passages import COUNTERFACTUAL_KINDS, Passage, normalize_number, value_keys, values


@dataclass(frozen=True)
class Case:
    index: int  # of the held-out example
    passage_id: str
    passage: str  # the changed passage
    trained: tuple[tuple[str, str], ...]  # (normalized number, kind) as in the training data
    changed: tuple[tuple[str, str], ...]  # (normalized number, kind) as in the changed passage
    mapping: tuple[tuple[tuple[str, str], str], ...] = ()  # (number, kind) -> the new number as written


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
                tuple(sorted({(normalize_number(x), k[1]) for k, x in mapping.items()})),
                tuple(sorted(mapping.items())))


def apply_mapping(text: str, case: Case) -> str:
    """``text`` (e.g. the answer the passage supports) with the case's changed values: the answer that is
    consistent with the changed passage."""
    new = dict(case.mapping)
    for v in sorted(values(text), key=lambda v: -v.start):
        if (v.number, v.kind) in new:
            text = text[:v.start] + new[(v.number, v.kind)] + text[v.end:]
    return text


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
