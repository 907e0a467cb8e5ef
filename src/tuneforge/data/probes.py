"""Probe questions (``dataset.probes``): held-out questions with known right answers, answered by both models.

The test split comes from the same source rows as the training data (other phrasings of held-out questions);
probes are questions of their own, never trained on. A **trap** asks something whose honest answer
contradicts a tempting wrong one ("Bãi biển đẹp nhất Đà Lạt là bãi nào?": there is no sea), and declares the
claim a right answer must make (``required``, a regex, case-insensitive). The file is a CSV:

    question,category,trap,required,required_message
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import DataError
from tuneforge.schema.dataset import DatasetConfig

COLUMNS = ("question", "category", "trap", "required", "required_message")
_YES = {"yes", "true", "1", "y"}
_NO = {"no", "false", "0", "n", ""}


@dataclass(frozen=True)
class Probe:
    question: str
    category: str | None
    trap: bool
    required: str | None  # regex a right answer matches
    required_message: str  # the right fact, in words
    line: int  # in the probes file


def probes_path(ds: DatasetConfig) -> Path | None:
    if not ds.probes:
        return None
    from tuneforge.paths import project_root

    p = Path(ds.probes)
    return p if p.is_absolute() else project_root() / p


def load_probes(ds: DatasetConfig) -> list[Probe]:
    """The dataset's probes; every bad row is an error naming the file, line and rule."""
    path = probes_path(ds)
    if path is None:
        return []
    if not path.is_file():
        raise DataError(f"dataset.probes: {path} not found")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("question", "trap", "required") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}; the header must be "
                            f"{','.join(COLUMNS)}")
        probes, errors, seen = [], [], set()
        for row in reader:
            line = reader.line_num
            q = unicodedata.normalize("NFC", (row.get("question") or "").strip())
            trap = (row.get("trap") or "").strip().lower()
            required = (row.get("required") or "").strip() or None
            if not q:
                errors.append(f"{path}:{line}: empty question")
                continue
            if q.casefold() in seen:
                errors.append(f"{path}:{line}: the question repeats an earlier probe: {q!r}")
            seen.add(q.casefold())
            if trap not in _YES | _NO:
                errors.append(f"{path}:{line}: trap={row.get('trap')!r}; write yes or no")
                continue
            if trap in _YES and not required:
                errors.append(f"{path}:{line}: a trap question must declare its required claim (column required)")
            if required:
                try:
                    re.compile(required)
                except re.error as exc:
                    errors.append(f"{path}:{line}: invalid regex in required: {exc}")
                    continue
            probes.append(Probe(q, (row.get("category") or "").strip() or None, trap in _YES,
                                unicodedata.normalize("NFC", required) if required else None,
                                (row.get("required_message") or "").strip(), line))
    if errors:
        raise DataError("dataset.probes has bad rows:\n  " + "\n  ".join(errors))
    return probes


def probe_question_keys(ds: DatasetConfig) -> dict[str, int]:
    """Normalised probe question -> its line, for lint's check that no training row repeats a probe."""
    return {normalize_question(p.question): p.line for p in load_probes(ds)}


def normalize_question(text: str) -> str:
    """Case, accents kept; punctuation and spacing dropped: "Đà Lạt có biển không?" == "đà lạt có biển không"."""
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFC", text).casefold()))
