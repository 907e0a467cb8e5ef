"""The report's preference section: reward accuracy and margin on held-out pairs, starting model vs tuned
(eval.json ``preference``, from tuneforge.evaluation.preference_eval)."""

from __future__ import annotations

import html
from typing import Any

NOTE = ("Implicit DPO reward: beta x (log p_model - log p_reference) of each answer. Tuned model: reference = "
        "the starting weights. Starting model: reference = its own base. Accuracy: share of pairs whose chosen "
        "answer gets the higher reward (ties count as wrong); margin: mean chosen - rejected reward.")


def preference_rows(results: dict[str, Any]) -> list[list[str]]:
    p = results.get("preference") or {}
    rows = []
    for source, n in (p.get("pairs") or {}).items():
        cells = [f"{source} ({n} pairs)"]
        for side in ("starting", "tuned"):
            m = (p.get(side) or {}).get(source)
            cells.append(f"{m['reward_accuracy']:.1f}% / {m['reward_margin']:+.3f}" if m else "-")
        rows.append(cells)
    return rows


def preference_markdown(results: dict[str, Any]) -> list[str]:
    rows = preference_rows(results)
    if not rows:
        return []
    out = ["## Preference pairs (held out): reward accuracy / mean margin", "",
           "| pairs | starting model | tuned |", "|---|---|---|"]
    out += [f"| {' | '.join(r)} |" for r in rows]
    return [*out, "", NOTE, ""]


def preference_html(results: dict[str, Any]) -> str:
    rows = preference_rows(results)
    if not rows:
        return ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<h2>Preference pairs <span class=\"meta\">(held out): reward accuracy / mean margin</span></h2>"
            f"<table><thead><tr><th>pairs</th><th>starting model</th><th>tuned</th></tr></thead><tbody>{body}"
            f"</tbody></table><p class=\"note\">{html.escape(NOTE)}</p>")
