"""Helpers for the data tests: small source files written per test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.schema.dataset import DatasetConfig, LintConfig

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def chat(user: str, answer: str, system: str | None = None) -> dict[str, Any]:
    msgs = [{"role": "system", "content": system}] if system else []
    return {"messages": [*msgs, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def write_lines(path: Path, rows: list[Any]) -> Path:
    """rows: dicts (dumped as JSON), str (written as is) or bytes (written raw), one per line."""
    with path.open("wb") as f:
        for r in rows:
            if isinstance(r, bytes):
                f.write(r + b"\n")
            elif isinstance(r, str):
                f.write(r.encode("utf-8") + b"\n")
            else:
                f.write(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n")
    return path


def lint_config(path: Path, **kw: Any) -> DatasetConfig:
    """A dataset config for linting one file, with the example-count rules off unless asked for."""
    lint = LintConfig(min_examples_error=kw.pop("min_error", 0), min_examples_warning=kw.pop("min_warning", 0),
                      **kw.pop("lint", {}))
    return DatasetConfig(name=path.stem, path=str(path), format=kw.pop("format", "chat"), lint=lint, **kw)
