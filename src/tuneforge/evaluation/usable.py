"""The verdict a reader checks first: from the usable rates of the test answers and the probes
(tuneforge.evaluation.answer_checks), and the list of the answers a reader would reject, each with its reasons."""

from __future__ import annotations

from typing import Any


def _review(results: dict[str, Any], side: str) -> dict[str, Any] | None:
    return results.get("style", {}).get(side, {}).get("review")


def usable_verdict(results: dict[str, Any]) -> tuple[str, str] | None:
    """(tone, sentence) from the usable rates: better | worse | mixed | unusable. None without a review.

    The fine-tuned model is called better only when most of its answers are usable and its usable rate beats
    the base's on the test split and on the probes; a model whose answers are mostly unusable is never better,
    whatever the overlap metrics say."""
    tuned, base = _review(results, "finetuned"), _review(results, "base")
    if tuned is None or base is None:
        return None
    sets = [("test answers", tuned, base)]
    probes = results.get("probes")
    if probes:
        sets.append(("probe answers", probes["finetuned"] | {"n": probes["n"]}, probes["base"] | {"n": probes["n"]}))
    parts = [f"{t['n_usable']} of {t['n']} {name} usable ({t['usable_rate']:.0f}%, base {b['usable_rate']:.0f}%)"
             for name, t, b in sets]
    if probes and probes.get("n_traps"):
        parts.append(f"traps answered right {probes['finetuned']['traps_right']}/{probes['n_traps']} "
                     f"(base {probes['base']['traps_right']})")
    claims = results.get("style", {}).get("finetuned", {}).get("forbidden_claims", [])
    para = sum(c.get("check") == "concepts" for c in claims)
    probe_claims = probes["finetuned"]["forbidden_claims"] if probes else 0
    parts.append(f"{len(claims) + probe_claims} forbidden claims (test: {len(claims) - para} by regex, {para} "
                 f"paraphrased; probes: {probe_claims})")
    if any(t["usable_rate"] < 50 for _, t, _ in sets):
        counts: dict[str, int] = {}
        for _, t, _ in sets:
            for k, v in t.get("reason_counts", {}).items():
                counts[k] = counts.get(k, 0) + v
        top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
        return "unusable", f"NOT USABLE: most fine-tuned answers fail a reader's checks ({top}). " + "; ".join(parts)
    if all(t["usable_rate"] > b["usable_rate"] for _, t, b in sets):
        return "better", "Fine-tuned is better: " + "; ".join(parts)
    if all(t["usable_rate"] < b["usable_rate"] for _, t, b in sets):
        return "worse", "Fine-tuned is worse: " + "; ".join(parts)
    return "mixed", "Fine-tuned is not better on every set: " + "; ".join(parts)


def unusable_answers(results: dict[str, Any], side: str = "finetuned") -> list[dict[str, Any]]:
    """The answers of ``side`` a reader would reject, probes first (they carry the traps), each with its reasons."""
    out = []
    for s in (results.get("probes") or {}).get("samples", []):
        if s.get(f"{side}_reasons"):
            out.append({"set": "probe" + (" (trap)" if s.get("trap") else ""), "prompt": s["question"],
                        "answer": s[side], "reasons": s[f"{side}_reasons"]})
    review = _review(results, side)
    if review:
        for i, reasons in enumerate(review["reasons"]):
            if reasons and i < len(results["samples"]):
                out.append({"set": "test", "prompt": results["samples"][i]["prompt"],
                            "answer": results["samples"][i][side], "reasons": reasons})
    return out
