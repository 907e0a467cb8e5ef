"""Counterfactual passages: a passage whose changing values (price, distance, hour) differ from the training
data's, for the faithfulness measurement (tuneforge.evaluation.faithfulness) and the RAFT-style training rows
(tuneforge.data.rag_rows).

Every value of a changing kind in the passage changes; none becomes a number the passage or the answer already
had. The measurement uses one fixed change (variant 0: a price x1.4 rounded up to 5.000 đồng, ranges keeping
their order; a distance +50%, at least +3 km; an hour +2). The training rows draw one of the other variants
(other factors and shifts), and none of their numbers is one that variant 0 gives the same value: a model
trained on changed passages cannot answer a measured counterfactual from memory, only by reading it. (Until
2026-12-06 training used variant 0 too, and 4 of the 7 measured passages had training answers holding exactly
the measured changed values.)
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


# variant -> (price factor, factor for a price under 1.000, distance +share, hour shift); 0 is the
# measurement's, the others are for training
VARIANTS = {0: (1.4, 2, 0.5, 2), 1: (1.2, 3, 0.3, 1), 2: (1.7, 4, 0.8, 3), 3: (2.0, 5, 1.0, -1),
            4: (2.5, 6, 0.2, 4)}
TRAINING_VARIANTS = tuple(v for v in VARIANTS if v)


def changed_number(number: str, kind: str, variant: int = 0) -> float:
    n = float(number)
    price, small, distance, shift = VARIANTS[variant]
    if kind == "price":
        return max(5000.0, math.ceil(n * price / 5000) * 5000) if n >= 1000 else n * small
    if kind == "distance":
        return n + max(3, round(n * distance))
    return (n + shift) % 24 if kind == "hour" else n + 1


def counterfactual(passage: Passage, reference: str, index: int, variant: int = 0) -> Case | None:
    """The changed passage for one answer, or None when they share no value of a changing kind.

    ``variant`` 0 is the measurement's change; another variant (training rows) never gives a number the same
    value that variant 0 gives it, so no training answer holds a measured changed value."""
    ref = {k for k in value_keys(reference) if k[1] in COUNTERFACTUAL_KINDS}
    if not any((v.number, v.kind) in ref for v in values(passage.text)):
        return None
    hits = [v for v in values(passage.text) if v.kind in COUNTERFACTUAL_KINDS]
    taken = {n for n, _ in value_keys(passage.text) | value_keys(reference)}
    if variant:
        measured = counterfactual(passage, reference, index)
        taken |= {n for n, _ in measured.changed} if measured else set()
    mapping: dict[tuple[str, str], str] = {}
    for v in hits:
        if (v.number, v.kind) not in mapping:
            new = changed_number(v.number, v.kind, variant)
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
