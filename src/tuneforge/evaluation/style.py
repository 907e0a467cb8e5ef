"""Style checks and the fact guard, applied to the *generated* answers of both models.

The dataset declares both (``dataset.style_checks``, ``dataset.forbidden_claims``): the style is what the
fine-tune should teach (e.g. an answer opens with "Dạ"), the forbidden claims what no answer may ever say
(Đà Lạt has no beach). Also flags answers that were cut off at ``max_new_tokens`` or degenerated."""

from __future__ import annotations

import re
from typing import Any

from tuneforge.schema.dataset import DatasetConfig

_REPEAT = re.compile(r"(.)\1{7,}|(\b\w+\b)(\W+\2\b){4,}", re.S)


def degenerate(text: str) -> bool:
    """A run of one repeated character or word, or the replacement character (bytes cut mid-character)."""
    return "\ufffd" in text or bool(_REPEAT.search(text))


def score_style(ds: DatasetConfig, answers: list[str], references: list[str],
                new_tokens: list[int] | None = None, max_new_tokens: int | None = None) -> dict[str, Any]:
    """Per style check: how many applicable answers pass; the forbidden claims found; cut-off/degenerate."""
    checks = {}
    for c in ds.style_checks:
        rx = re.compile(c.pattern, re.I)
        when = re.compile(c.when_reference, re.I) if c.when_reference else None
        idx = [i for i, ref in enumerate(references) if when is None or when.search(ref)]
        passed = [i for i in idx if rx.search(answers[i])]
        checks[c.id] = {"description": c.description, "applicable": len(idx), "passed": len(passed),
                        "rate": len(passed) / len(idx) if idx else None,
                        "failed_examples": [i for i in idx if i not in set(passed)]}
    from tuneforge.data.lint import FactGuard

    guard = FactGuard(ds.forbidden_claims, ds.negation)
    claims = [{"example": i, "id": h.id, "match": h.match, "message": h.message, "check": h.check}
              for i, a in enumerate(answers) for h in guard.find(a)]
    rates = [v["rate"] for v in checks.values() if v["rate"] is not None]
    out: dict[str, Any] = {
        "checks": checks,
        "style_rate": sum(rates) / len(rates) if rates else None,  # mean over the checks
        "forbidden_claims": claims,
        "degenerate": [i for i, a in enumerate(answers) if degenerate(a)],
    }
    if new_tokens is not None and max_new_tokens:
        out["cut_off"] = [i for i, n in enumerate(new_tokens) if n >= max_new_tokens]
    return out


def style_headline(style: dict[str, Any]) -> str:
    """'style rate 0% → 93%; 0 forbidden claims' (fine-tuned's claims), or '' when the dataset declares none."""
    base, tuned = style.get("base", {}), style.get("finetuned", {})
    parts = []
    if tuned.get("style_rate") is not None:
        parts.append(f"style rate {base.get('style_rate', 0):.0%} → {tuned['style_rate']:.0%}")
        for cid, c in tuned["checks"].items():
            b = base.get("checks", {}).get(cid, {})
            if c["rate"] is not None:
                parts.append(f"{cid} {b.get('passed', 0)}/{c['applicable']} → {c['passed']}/{c['applicable']}")
    if "forbidden_claims" in tuned:
        n = len(tuned["forbidden_claims"])
        para = sum(c.get("check") == "concepts" for c in tuned["forbidden_claims"])
        n_base = len(base.get("forbidden_claims", []))
        parts.append(f"{n} forbidden claim{'s' if n != 1 else ''} in the fine-tuned answers"
                     f" ({n - para} by regex, {para} by the paraphrase check; base {n_base})")
    return "; ".join(parts)
