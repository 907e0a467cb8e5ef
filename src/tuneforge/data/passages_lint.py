"""``tuneforge data passages``: the knowledge base's lint (tuneforge.data.passages) against the prepared
held-out split: every empty, duplicate or forbidden passage, and every test answer no passage supports."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.data.passages import Support, load_passages, passage_problems, passages_path, reference_support
from tuneforge.schema.dataset import DatasetConfig


def test_references(ds: DatasetConfig) -> list[tuple[str, int, str]]:
    """(test split file, line, reference answer) of every distinct held-out reference answer."""
    from tuneforge.data.prepare import prepare_splits

    path = Path(prepare_splits(ds).test)
    seen: set[str] = set()
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            msgs = json.loads(line)["messages"]
            ref = next((m["content"] for m in reversed(msgs) if m.get("role") == "assistant"), None)
            if ref and ref not in seen:
                seen.add(ref)
                out.append((str(path), n, ref))
    return out


def lint_knowledge_base(ds: DatasetConfig) -> tuple[list[str], list[Support]]:
    """(problems, support of each held-out reference) of the dataset's knowledge base."""
    path = passages_path(ds)
    passages = load_passages(ds, lenient=True)
    problems = list(passage_problems(ds, passages, path))  # type: ignore[arg-type]
    support = reference_support(test_references(ds), [p for p in passages if p.text.strip()])
    for s in support:
        if not s.supported:
            shown = ", ".join(f"{n} ({k})" for n, k in s.missing)
            problems.append(f"{s.file}:{s.line}: P010 the test answer is not supported by any passage: no passage "
                            f"holds {shown}")
    return problems, support


def lint_summary(problems: list[str], support: list[Support], n_passages: int) -> str:
    judged = [s for s in support if s.values]
    ok = sum(s.supported for s in judged)
    lines = [*problems, f"{n_passages} passages; {ok} of {len(judged)} held-out answers with checkable values are "
                        f"supported ({len(support) - len(judged)} without a checkable value, not judged); "
                        f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"]
    return "\n".join(lines)
