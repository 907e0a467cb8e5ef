"""The ladder's sections of report.md / report.html and its console table (from eval.json's ``ladder``)."""

from __future__ import annotations

import html
from typing import Any

HEADER = ("Arm", "Usable", "Style", "Forbidden claims", "ROUGE-L", "Right values", "Faithful (counterfactual)",
          "Prompt tokens/answer", "Wall time")


def _f(v: Any, suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:.0f}{suffix}" if isinstance(v, float) else f"{v}{suffix}"


def ladder_rows(results: dict[str, Any]) -> list[list[str]]:
    return [[e["arm"], _f(e["usable_rate"], "%"), _f(e["style_rate"], "%"), str(e["forbidden_claims"]),
             f"{e['rouge_l']:.1f}", _f(e["value_rate"], "%"), _f(e["faithfulness"], "%"),
             f"{e['prompt_tokens']:.0f}", f"{e['seconds']:.0f} s"] for e in results["ladder"]]


def faith_note(results: dict[str, Any]) -> str:
    parts = []
    for arm, f in results.get("faithfulness", {}).items():
        c = f["counts"]
        bad = f.get("passage_unusable", 0)
        unusable = f" ({bad} of them unusable, not counted as faithful)" if bad else ""
        stated = f.get("stated", f["n"] - c["neither"])
        wins = f" (of the {stated} naming a value, {c['passage']} name only the passage's)" if stated else ""
        k = f.get("passages")
        over = f" (over {k} distinct passage{'s' if k != 1 else ''})" if k is not None else ""
        parts.append(f"{arm}: {c['passage']}/{f['n']}{over} carry the passage's value{unusable}, {c['trained']} the "
                     f"trained one, {c['both']} both, {c['neither']} neither{wins}")
    return "; ".join(parts)


def ladder_markdown(results: dict[str, Any]) -> list[str]:
    if not results.get("ladder"):
        return []
    r = results["retriever"]
    return ["## The ladder: prompt → RAG → fine-tune", "", f"**{results['ladder_verdict']}**", "",
            "| " + " | ".join(HEADER) + " |", "|---" + "|---:" * (len(HEADER) - 1) + "|",
            *("| " + " | ".join(row) + " |" for row in ladder_rows(results)), "",
            f"Same {results['n_examples']} held-out questions, same decoding, same checks. Few-shot: "
            f"{results['few_shot']} train conversations; RAG: top {r['k']} of {r['passages']} passages by "
            f"{r['model']}. Right values: answers carrying one of the reference's checkable values (price, "
            f"distance, hour...). Faithful: counterfactual passages with a changed value ({faith_note(results)}).",
            ""]


def ladder_html(results: dict[str, Any]) -> str:
    lines = ladder_markdown(results)
    if not lines:
        return ""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f'<td class="num">{e(c)}</td>' if j else f"<td>{e(c)}</td>"
                                    for j, c in enumerate(row)) + "</tr>" for row in ladder_rows(results))
    return (f'<h2>The ladder: prompt → RAG → fine-tune</h2><div class="verdict">{e(results["ladder_verdict"])}</div>'
            f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="note">{e(lines[-2])}</p>')


def ladder_text(results: dict[str, Any]) -> str:
    rows = [list(HEADER), *ladder_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
    return f"{table}\n{results['ladder_verdict']}\nfaithfulness: {faith_note(results)}"
