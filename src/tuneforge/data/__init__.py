"""Dataset preparation: source file -> canonical chat JSONL splits (train/val/test), cached by content.

This is the minimal reader the foundation trains with; the dataset-preparation issue extends it
(formats, lint, augmentation, grouped split, stats) behind the same ``prepare_splits`` entry point.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tuneforge.data.config import DatasetConfig
from tuneforge.errors import DataError
from tuneforge.paths import cache_dir, project_root


@dataclass(frozen=True)
class PreparedData:
    """Paths of the prepared chat-JSONL splits (each line: {"messages": [...]}) and their sizes."""

    train: Path
    val: Path
    test: Path
    sizes: dict[str, int]


def source_path(ds: DatasetConfig) -> Path:
    p = Path(ds.path)
    return p if p.is_absolute() else project_root() / p


def _read_chat(path: Path, system_prompt: str | None) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            msgs = rec.get("messages") if isinstance(rec, dict) else None
            if not isinstance(msgs, list) or not msgs:
                raise DataError(f"{path}:{lineno}: expected an object with a non-empty 'messages' list")
            if system_prompt and msgs[0].get("role") != "system":
                msgs = [{"role": "system", "content": system_prompt}, *msgs]
            rows.append({"messages": msgs})
    return rows


def prepare_splits(ds: DatasetConfig) -> PreparedData:
    src = source_path(ds)
    if not src.is_file():
        raise DataError(f"dataset.path: file not found: {src}")
    if ds.format != "chat":
        raise DataError(f"dataset.format={ds.format!r} is not supported yet; choose one of: chat")
    key = hashlib.sha256(src.read_bytes() + json.dumps(asdict(ds), sort_keys=True).encode()).hexdigest()[:16]
    out = cache_dir() / "datasets" / f"{ds.name}-{key}"
    names = ("train", "val", "test")
    if not all((out / f"{n}.jsonl").exists() for n in names):
        rows = _read_chat(src, ds.system_prompt)
        random.Random(ds.split.seed).shuffle(rows)
        n = len(rows)
        n_val, n_test = round(n * ds.split.val), round(n * ds.split.test)
        parts = {"val": rows[:n_val], "test": rows[n_val:n_val + n_test], "train": rows[n_val + n_test:]}
        out.mkdir(parents=True, exist_ok=True)
        for name, part in parts.items():
            tmp = out / f".{name}.jsonl.tmp"
            with tmp.open("w", encoding="utf-8") as f:
                for r in part:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            os.replace(tmp, out / f"{name}.jsonl")
    sizes = {n: sum(1 for _ in (out / f"{n}.jsonl").open(encoding="utf-8")) for n in names}
    return PreparedData(out / "train.jsonl", out / "val.jsonl", out / "test.jsonl", sizes)
