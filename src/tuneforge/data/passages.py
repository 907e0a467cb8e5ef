"""The knowledge base of a dataset (``dataset.passages``): fact-bearing passages that retrieval puts into the
prompt, and its lint.

The file is a CSV with the header ``id,category,passage`` or a JSONL file of ``{"id", "category", "passage"}``
objects, one passage a row. ``tuneforge data passages dataset=NAME`` checks it like any data:

- P001 empty passage, P002 duplicate id, P003 duplicate passage (same text up to case and spacing);
- P004 a passage states a claim the dataset forbids (``dataset.forbidden_claims``, the same FactGuard as the
  training data);
- P010 a held-out test answer is not supported by the knowledge base.

**Supported**, concretely: every *checkable value* of the reference answer (a number with its unit: a price in
đồng, a distance in km, an hour, minutes, °C, metres) appears in some passage with the same unit. A range
"15.000–30.000 đồng" is two values, both in đồng. A reference without a checkable value is not judged (it is
counted as such): retrieval cannot be checked on opinions ("nên đi buổi sáng").
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import DataError
from tuneforge.schema.dataset import DatasetConfig

# the value kinds a counterfactual changes (tuneforge.evaluation.faithfulness): price, distance, hour
UNITS = {"đồng": "price", "đ": "price", "vnd": "price", "km": "distance", "giờ": "hour", "phút": "minutes",
         "°c": "temperature", "m": "height"}
COUNTERFACTUAL_KINDS = ("price", "distance", "hour")
_NUM = r"\d+(?:[.,]\d+)*"
VALUE = re.compile(rf"(?<![\w.,])(?P<a>{_NUM})(?:\s*[–-]\s*(?P<b>{_NUM}))?\s*"
                   r"(?P<unit>đồng|đ|vnd|km|giờ|phút|°C|m)(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Passage:
    id: str
    category: str | None
    text: str
    line: int  # in the passages file (1-based; the CSV header is line 1)


@dataclass(frozen=True)
class Value:
    """One checkable value: its number as written ("15.000"), normalized ("15000") and its unit's kind."""

    written: str
    number: str
    kind: str
    start: int  # offset of the number in its text
    end: int


def normalize_number(s: str) -> str:
    """"15.000" and "15,000" -> "15000"; "2,5" -> "2.5" (a separator before exactly 3 digits groups thousands)."""
    s = re.sub(r"[.,](?=\d{3}(?!\d))", "", s)
    return s.replace(",", ".")


def values(text: str) -> list[Value]:
    """Every checkable value in ``text``, in order (both ends of a range)."""
    text = unicodedata.normalize("NFC", text)
    out = []
    for m in VALUE.finditer(text):
        kind = UNITS[m.group("unit").lower()]
        for g in ("a", "b"):
            if m.group(g):
                out.append(Value(m.group(g), normalize_number(m.group(g)), kind, m.start(g), m.end(g)))
    return out


def value_keys(text: str) -> set[tuple[str, str]]:
    return {(v.number, v.kind) for v in values(text)}


def passages_path(ds: DatasetConfig) -> Path | None:
    if not ds.passages:
        return None
    from tuneforge.paths import project_root

    p = Path(ds.passages)
    return p if p.is_absolute() else project_root() / p


def load_passages(ds: DatasetConfig, *, lenient: bool = False) -> list[Passage]:
    """The dataset's passages (empty rows kept when ``lenient``, for lint to report). Refuses a dataset without
    a knowledge base, a missing file or a file without the ``passage`` column, naming the key or file."""
    path = passages_path(ds)
    if path is None:
        raise DataError(f"dataset {ds.name!r} has no knowledge base: set dataset.passages to a CSV or JSONL file "
                        "of passages (id, category, passage), e.g. data/dalat/passages.csv")
    if not path.is_file():
        raise DataError(f"dataset.passages: {path} not found")
    rows: list[Passage] = []
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                if not isinstance(obj, dict) or "passage" not in obj:
                    raise DataError(f"{path}:{n}: expected an object with keys id, category, passage")
                rows.append(Passage(str(obj.get("id") or f"line{n}"), obj.get("category"),
                                    str(obj["passage"] or ""), n))
    else:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if "passage" not in (reader.fieldnames or []):
                raise DataError(f"{path}:1: no 'passage' column; the header must be id,category,passage")
            for row in reader:
                rows.append(Passage((row.get("id") or "").strip() or f"line{reader.line_num}",
                                    (row.get("category") or "").strip() or None,
                                    unicodedata.normalize("NFC", (row.get("passage") or "").strip()),
                                    reader.line_num))
    return rows if lenient else [p for p in rows if p.text.strip()]


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFC", text).casefold()))


def passage_problems(ds: DatasetConfig, passages: list[Passage], path: Path) -> Iterable[str]:
    """``file:line: RULE message`` for every empty, duplicate or forbidden passage."""
    from tuneforge.data.lint import FactGuard

    guard = FactGuard(ds.forbidden_claims, ds.negation)
    ids: dict[str, int] = {}
    texts: dict[str, int] = {}
    for p in passages:
        where = f"{path}:{p.line}"
        if not p.text.strip():
            yield f"{where}: P001 empty passage (id {p.id})"
            continue
        if p.id in ids:
            yield f"{where}: P002 duplicate id {p.id!r} (first on line {ids[p.id]})"
        ids.setdefault(p.id, p.line)
        k = _key(p.text)
        if k in texts:
            yield f"{where}: P003 duplicate passage {p.id!r}: same text as line {texts[k]}"
        texts.setdefault(k, p.line)
        for hit in guard.find(p.text):
            yield f"{where}: P004 passage {p.id!r} states a forbidden claim [{hit.id}]: {hit.match!r} ({hit.message})"


@dataclass(frozen=True)
class Support:
    """A held-out answer against the knowledge base: its checkable values and those no passage holds."""

    file: str
    line: int
    reference: str
    values: tuple[tuple[str, str], ...]
    missing: tuple[tuple[str, str], ...]

    @property
    def supported(self) -> bool:
        return not self.missing


def reference_support(references: list[tuple[str, int, str]], passages: list[Passage]) -> list[Support]:
    """``references``: (file, line, reference answer). Each checked against the union of the passages' values."""
    known: set[tuple[str, str]] = set()
    for p in passages:
        known |= value_keys(p.text)
    out = []
    for file, line, ref in references:
        vals = sorted(value_keys(ref))
        out.append(Support(file, line, ref, tuple(vals), tuple(v for v in vals if v not in known)))
    return out
