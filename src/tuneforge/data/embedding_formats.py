"""Embedding-training formats (JSONL), read by the same pipeline as the conversation formats:

    pairs          {"anchor": ..., "positive": ...}                       (query, relevant passage)
    triplets       {"anchor": ..., "positive": ..., "negative": ...}      (+ a passage that is not relevant)
    scored_pairs   {"text1": ..., "text2": ..., "score": 0.0 .. 1.0}      (graded similarity, CoSENT / cosine loss)

Field names come from ``dataset.fields`` (anchor, positive, negative, text1, text2, score). A row becomes
the two-message form every later stage understands (user = anchor / text1, assistant = positive / text2),
so lint, the fact guard, duplicates, augmentation of the anchor and the grouped split work unchanged; the
negative or the score rides along in :attr:`Record.extra` and is written next to the messages in the
prepared line (``{"messages": [...], "negative": ...}``). A bad row gets the reader's rule ids with its line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tuneforge.data.records import Record
from tuneforge.errors import DataError
from tuneforge.schema.dataset import FieldMap

BAD_SCHEMA, EMPTY = "D010", "D014"

# data shape of each format: the column names sentence-transformers' losses read, in order
COLUMNS = {"pairs": ("anchor", "positive"), "triplets": ("anchor", "positive", "negative"),
           "scored_pairs": ("sentence1", "sentence2", "score")}


def _text(obj: dict, key: str, rec: Record) -> str | None:
    v = obj.get(key)
    if v is None:
        rec.problems.append((BAD_SCHEMA, f"missing field '{key}'"))
        return None
    if not isinstance(v, str):
        rec.problems.append((BAD_SCHEMA, f"field '{key}' must be a string, got {type(v).__name__}"))
        return None
    if not v.strip():
        rec.problems.append((EMPTY, f"field '{key}' is empty"))
        return None
    return v


def _pair(first: str, second: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": first}, {"role": "assistant", "content": second}]


def pairs_to_messages(fields: FieldMap) -> Callable[[dict, Record], Any]:
    def convert(obj: dict, rec: Record) -> Any:
        anchor, positive = _text(obj, fields.anchor, rec), _text(obj, fields.positive, rec)
        return None if anchor is None or positive is None else _pair(anchor, positive)

    return convert


def triplets_to_messages(fields: FieldMap) -> Callable[[dict, Record], Any]:
    def convert(obj: dict, rec: Record) -> Any:
        anchor, positive = _text(obj, fields.anchor, rec), _text(obj, fields.positive, rec)
        negative = _text(obj, fields.negative, rec)
        if anchor is None or positive is None or negative is None:
            return None
        if negative.strip() == positive.strip():
            rec.problems.append((BAD_SCHEMA, f"field '{fields.negative}' is the same text as '{fields.positive}'"))
            return None
        rec.extra = {"negative": negative}
        return _pair(anchor, positive)

    return convert


def scored_pairs_to_messages(fields: FieldMap) -> Callable[[dict, Record], Any]:
    def convert(obj: dict, rec: Record) -> Any:
        t1, t2 = _text(obj, fields.text1, rec), _text(obj, fields.text2, rec)
        score = obj.get(fields.score)
        if score is None:
            rec.problems.append((BAD_SCHEMA, f"missing field '{fields.score}'"))
            return None
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            rec.problems.append((BAD_SCHEMA, f"field '{fields.score}' must be a number in [0, 1], "
                                             f"got {type(score).__name__}"))
            return None
        if not (math.isfinite(score) and 0 <= score <= 1):
            rec.problems.append((BAD_SCHEMA, f"field '{fields.score}'={score} must be in [0, 1]"))
            return None
        if t1 is None or t2 is None:
            return None
        rec.extra = {"score": float(score)}
        return _pair(t1, t2)

    return convert


def pairs_writer(path: Path, fields: FieldMap, items: Iterable[tuple[list[dict], str | None]]) -> None:
    """Canonical single-turn conversations -> pairs (question = anchor, answer = positive)."""
    with path.open("w", encoding="utf-8") as f:
        for messages, category in items:
            obj: dict[str, Any] = {fields.anchor: messages[-2]["content"], fields.positive: messages[-1]["content"]}
            if category is not None and fields.category:
                obj[fields.category] = category
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")


def no_writer(fmt: str) -> Callable[[Path, FieldMap, Iterable[tuple[list[dict], str | None]]], None]:
    def refuse(path: Path, fields: FieldMap, items: Iterable[tuple[list[dict], str | None]]) -> None:
        raise DataError(f"format {fmt} needs a {'negative' if fmt == 'triplets' else 'score'} per row, which a "
                        "conversation does not have: write it as pairs")

    return refuse


def prepared_row(line: str, shape: str) -> dict[str, Any]:
    """One prepared line -> the columns of ``shape`` (pairs | triplets | scored_pairs)."""
    obj = json.loads(line)
    msgs = obj["messages"]
    users = [m["content"] for m in msgs if m["role"] == "user"]
    first, second = users[-1], msgs[-1]["content"]
    if shape == "scored_pairs":
        return {"sentence1": first, "sentence2": second, "score": float(obj["score"])}
    row = {"anchor": first, "positive": second}
    if shape == "triplets":
        row["negative"] = obj["negative"]
    return row
