"""The A/B report of an evaluated run: ``report.md`` and a self-contained ``report.html`` (inline CSS, the
loss curve PNG embedded as base64) next to ``loss_curve.png``, all written from eval.json + metrics.jsonl.

    python -m tuneforge.evaluation.report <run_dir>     re-renders the report from an existing eval.json
"""

from __future__ import annotations

import base64
import html
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.evaluation.ladder_report import ladder_html, ladder_markdown
from tuneforge.evaluation.loss_curve import loss_curve_png
from tuneforge.evaluation.metrics import JUDGED, METRICS, Metric
from tuneforge.evaluation.report_css import CSS
from tuneforge.evaluation.usable import _review, unusable_answers, usable_verdict

__all__ = ["CSS", "headline", "render_html", "render_markdown", "unusable_answers", "usable_verdict", "write_reports"]


@dataclass(frozen=True)
class MetricRow:
    metric: Metric
    base: float
    finetuned: float

    @property
    def delta(self) -> float:
        return self.finetuned - self.base

    @property
    def verdict(self) -> str:
        """better | worse | same | info (not judged)"""
        if self.metric not in JUDGED:
            return "info"
        if self.metric.fmt.format(abs(self.delta)) == self.metric.fmt.format(0.0):
            return "same"  # a difference below the shown precision is no difference
        return "better" if (self.delta > 0) == self.metric.higher_is_better else "worse"

    def fmt(self, v: float) -> str:
        return self.metric.fmt.format(v) if math.isfinite(v) else str(v)

    @property
    def delta_text(self) -> str:
        sign = "+" if self.delta > 0 else "−" if self.delta < 0 else "±"
        text = sign + self.metric.fmt.format(abs(self.delta))
        if self.base and abs(self.base) > 1e-12 and self.metric.key in ("loss", "perplexity"):
            text += f" ({sign}{abs(self.delta) / abs(self.base) * 100:.1f}%)"
        return text


def metric_rows(results: dict[str, Any]) -> list[MetricRow]:
    return [MetricRow(m, float(results["base"][m.key]), float(results["finetuned"][m.key]))
            for m in METRICS if m.key in results["base"] and m.key in results["finetuned"]]


def headline(results: dict[str, Any]) -> str:
    rows = metric_rows(results)
    judged = [r for r in rows if r.verdict != "info"]
    wins = sum(r.verdict == "better" for r in judged)
    loss = next((r for r in rows if r.metric.key == "loss"), None)
    usable = usable_verdict(results)
    lead = f"{usable[1]}. Other metrics: " if usable else "Fine-tuned is "
    wins_text = (f"better on {wins} of {len(judged)}" if usable else f"better on {wins} of {len(judged)} metrics")
    from tuneforge.evaluation.style import style_headline

    style = style_headline(results.get("style", {}))
    if loss is None:  # a hosted model: no test loss (results["not_applicable"] says why)
        why = results.get("not_applicable", {}).get("loss")
        return (f"{lead}{wins_text}; test loss not applicable" + (f" ({why})" if why else "")
                + (f"; {style}" if style else "") + ".")
    note = " (the base is a random-init tiny model: its answers are noise by design)" if results.get(
        "random_init_base") else ""
    return (f"{lead}{wins_text}; test loss {loss.fmt(loss.base)} → "
            f"{loss.fmt(loss.finetuned)} ({loss.delta_text.split(' ', 1)[-1].strip('()')})"
            + (f"; {style}" if style else "") + f".{note}")


def metrics_table_markdown(results: dict[str, Any]) -> str:
    mark = {"better": " ✅", "worse": " ❌", "same": "", "info": ""}
    lines = ["| Metric | Base | Fine-tuned | Difference |", "|---|---:|---:|---:|"]
    for r in metric_rows(results):
        lines.append(f"| {r.metric.label} | {r.fmt(r.base)} | {r.fmt(r.finetuned)} | "
                     f"{r.delta_text}{mark[r.verdict]} |")
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{v:.0f}%"


def category_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per test category: n, ROUGE-L, chrF and style rate as base → fine-tuned, forbidden claims."""
    rows = []
    for cat, r in results.get("by_category", {}).items():
        b, t = r["base"], r["finetuned"]
        rows.append([cat, str(r["n"]), f"{b['rouge_l']:.1f} → {t['rouge_l']:.1f}",
                     f"{b['chrf']:.1f} → {t['chrf']:.1f}",
                     f"{_pct(b['style_rate'])} → {_pct(t['style_rate'])}",
                     f"{b['forbidden_claims']} → {t['forbidden_claims']}"])
    return rows


CATEGORY_HEADER = ["Category", "n", "ROUGE-L", "chrF", "Style rate", "Forbidden claims"]


def metrics_table_text(results: dict[str, Any]) -> str:
    rows = metric_rows(results)
    mode = "sampling" if results["decoding"]["do_sample"] else "greedy decoding"
    lines = ["", f"tuneforge eval: {results['name']}  ({results['n_examples']} test examples, {mode})",
             f"  {'metric':<30}{'base':>12}{'fine-tuned':>12}{'difference':>22}"]
    for r in rows:
        lines.append(f"  {r.metric.label:<30}{r.fmt(r.base):>12}{r.fmt(r.finetuned):>12}{r.delta_text:>22}"
                     + ("  better" if r.verdict == "better" else "  worse" if r.verdict == "worse" else ""))
    lines.append(f"  {headline(results)}")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return (text or "∅").replace("|", "\\|").replace("\n", "<br>")


def hparams_text(results: dict[str, Any]) -> str:
    hp = results.get("hyperparameters") or {}
    return ", ".join(f"{k} {v}" for k, v in hp.items() if v is not None) or "(not recorded)"


def answer_flags(results: dict[str, Any], side: str, i: int) -> str:
    """' [cut off at max_new_tokens]' / ' [degenerate]' for sample ``i`` of ``side``."""
    st = results.get("style", {}).get(side, {})
    flags = [label for key, label in (("cut_off", "cut off at max_new_tokens"), ("degenerate", "degenerate"))
             if i in st.get(key, [])]
    flags += [f"forbidden claim {c['id']}" for c in st.get("forbidden_claims", []) if c["example"] == i]
    return "".join(f" [{f}]" for f in flags)


def decoding_text(results: dict[str, Any]) -> str:
    d = results["decoding"]
    mode = (f"sampling (temperature {d['temperature']}, top_p {d['top_p']}, seed {d['seed']})"
            if d["do_sample"] else "greedy")
    penalty = d.get("repetition_penalty", 1.0)
    rep = f", repetition penalty {penalty:g}" if penalty != 1.0 else ""
    return f"{mode}{rep}, max {d['max_new_tokens']} new tokens"


def render_markdown(results: dict[str, Any], has_curve: bool) -> str:
    n_show = results["decoding"].get("report_samples", 6)
    out = [
        f"# A/B report: {results['name']}",
        "",
        f"**{headline(results)}**",
        "",
        f"- run: `{results['run_dir']}`",
        (f"- base: {results['base_model']}; fine-tuned: {results['finetuned_model']} "
         f"(method {results['method']}, backend {results['backend']})"),
        f"- data: {results['n_examples']} examples of the held-out test split of `{results['dataset']}`",
        f"- decoding (same for both): {decoding_text(results)}",
        f"- hyperparameters: {hparams_text(results)}",
        "",
        *ladder_markdown(results),
        "## Metrics",
        "",
        metrics_table_markdown(results),
        "",
        "Loss and perplexity: lower is better. BLEU, chrF, ROUGE-L and exact match: 0–100, higher is better.",
        "",
    ]
    from tuneforge.evaluation.report_preference import preference_markdown

    out += preference_markdown(results)  # a preference run: reward accuracy and margin, starting vs tuned
    bad = unusable_answers(results)
    if _review(results, "finetuned") is not None:
        out += [f"## Fine-tuned answers a reader would reject ({len(bad)})", ""]
        out += [f"- **[{b['set']}] {_md_cell(b['prompt'])}** — {'; '.join(b['reasons'])}<br>"
                f"  {_md_cell(b['answer'][:400])}" for b in bad] or ["None: every answer passed."]
        out.append("")
    probes = results.get("probes")
    if probes:
        out += [f"## Probe questions ({probes['n']}, {probes['n_traps']} traps; never trained on)", "",
                "| Question | Base | Fine-tuned |", "|---|---|---|"]
        for s in probes["samples"]:
            cells = [f"{_md_cell(s[side])}<br>**{'; '.join(s[side + '_reasons']) or 'usable'}**"
                     for side in ("base", "finetuned")]
            trap = " (trap: " + _md_cell(s["required_message"]) + ")" if s["trap"] else ""
            out.append(f"| {_md_cell(s['question'])}{trap} | {cells[0]} | {cells[1]} |")
        out.append("")
    cat_rows = category_rows(results)
    if cat_rows:
        out += ["## By category (base → fine-tuned)", "", "| " + " | ".join(CATEGORY_HEADER) + " |",
                "|---|---:|---:|---:|---:|---:|", *("| " + " | ".join(r) + " |" for r in cat_rows), ""]
    if has_curve:
        out += ["## Loss curves", "", "![loss curves](loss_curve.png)", ""]
    samples = results["samples"][:n_show]
    if samples:
        out += [f"## Samples ({len(samples)} of {len(results['samples'])})", ""]
    for i, s in enumerate(samples, 1):
        out += [f"### {i}. {_md_cell(s['prompt'])}", "",
                "| Reference | Base | Fine-tuned |", "|---|---|---|",
                f"| {_md_cell(s['reference'])} | {_md_cell(s['base'])} | {_md_cell(s['finetuned'])} |", ""]
    return "\n".join(out)


# --- html ---------------------------------------------------------------------------------------------------


# (metric, short label) of the summary cards above the table
CARDS = (("loss", "Test loss"), ("perplexity", "Perplexity"), ("bleu", "BLEU"), ("chrf", "chrF"),
         ("rouge_l", "ROUGE-L"), ("exact_match", "Exact match %"))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _answer(title: str, text: str, cls: str) -> str:
    body = f'<p>{_e(text)}</p>' if text.strip() else '<p class="empty">(empty answer)</p>'
    return f'<div class="answer {cls}"><h3>{_e(title)}</h3>{body}</div>'


def render_html(results: dict[str, Any], png: bytes | None) -> str:
    from tuneforge.evaluation.report_preference import preference_html

    rows = metric_rows(results)
    by_key = {r.metric.key: r for r in rows}
    judged = [r for r in rows if r.verdict != "info"]
    wins = sum(r.verdict == "better" for r in judged)
    loss_ok = "loss" not in by_key or by_key["loss"].verdict == "better"  # no loss row: a hosted model
    tone = "" if wins * 2 > len(judged) and loss_ok else (
        "worse" if wins == 0 else "mixed")
    usable = usable_verdict(results)
    if usable:
        tone = {"better": "", "mixed": "mixed"}.get(usable[0], "worse")
    bad = unusable_answers(results)
    rejected = ""
    if usable:
        items = "".join(f'<div class="sample"><div class="prompt"><span class="n">{_e(b["set"])}</span>'
                        f'{_e(b["prompt"])}<span class="system">{_e("; ".join(b["reasons"]))}</span></div>'
                        f'<div class="answers" style="grid-template-columns:1fr">'
                        f'{_answer("Fine-tuned", b["answer"], "tuned")}</div></div>' for b in bad)
        rejected = (f"<h2>Fine-tuned answers a reader would reject <span class=\"meta\">({len(bad)})</span></h2>"
                    + (items or '<p class="note">None: every answer passed.</p>'))
    probes = results.get("probes")
    probe_html = ""
    if probes:
        cards_p = []
        for s in probes["samples"]:
            trap = f'<span class="system">trap: {_e(s["required_message"])}</span>' if s["trap"] else ""
            cards_p.append(
                f'<div class="sample"><div class="prompt">{_e(s["question"])}{trap}</div>'
                f'<div class="answers" style="grid-template-columns:1fr 1fr">'
                f'{_answer("Base: " + ("; ".join(s["base_reasons"]) or "usable"), s["base"], "base")}'
                f'{_answer("Fine-tuned: " + ("; ".join(s["finetuned_reasons"]) or "usable"), s["finetuned"], "tuned")}'
                "</div></div>")
        probe_html = (f'<h2>Probe questions <span class="meta">({probes["n"]}, {probes["n_traps"]} traps; never '
                      f'trained on)</span></h2>' + "".join(cards_p))
    cards = []
    for key, label in CARDS:
        r = by_key.get(key)
        if r is None:
            continue
        cards.append(
            f'<div class="card"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(r.fmt(r.finetuned))}</div>'
            f'<div class="base">base {_e(r.fmt(r.base))}</div>'
            f'<div class="delta {r.verdict}">{_e(r.delta_text)}</div></div>')
    table = ['<table class="metrics"><thead><tr><th>Metric</th><th>Base</th><th>Fine-tuned</th>'
             + "<th>Difference</th></tr></thead><tbody>"]
    for r in rows:
        judged = r.verdict in ("better", "worse")
        pill = f'<span class="pill {r.verdict}">{r.verdict}</span>' if judged else ""
        table.append(f"<tr><td>{_e(r.metric.label)}</td><td class=\"num\">{_e(r.fmt(r.base))}</td>"
                     f"<td class=\"num\">{_e(r.fmt(r.finetuned))}</td>"
                     f"<td><span class=\"delta {r.verdict}\">{_e(r.delta_text)}</span>{pill}</td></tr>")
    table.append("</tbody></table>")
    cat_rows = category_rows(results)
    by_cat = ""
    if cat_rows:
        head = "".join(f"<th>{_e(h)}</th>" for h in CATEGORY_HEADER)
        body = "".join("<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if j else f"<td>{_e(c)}</td>"
                                        for j, c in enumerate(r)) + "</tr>" for r in cat_rows)
        by_cat = (f'<h2>By category <span class="meta">(base → fine-tuned)</span></h2>'
                  f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    if png:
        curve = (f'<figure><img alt="train and eval loss curves" src="data:image/png;base64,'
                 f'{base64.b64encode(png).decode()}"></figure>'
                 '<p class="note">Train loss per logging step and eval loss on the validation split during '
                 'training; dashed lines: test loss of the base and the fine-tuned model.</p>')
    else:
        curve = '<p class="note">No metrics.jsonl in the run directory: no loss curves to show.</p>'
    n_show = results["decoding"].get("report_samples", 6)
    samples = []
    for i, s in enumerate(results["samples"][:n_show], 1):
        system = f'<span class="system">system: {_e(s["system"])}</span>' if s.get("system") else ""
        samples.append(
            f'<div class="sample"><div class="prompt"><span class="n">#{i}</span>{_e(s["prompt"])}{system}'
            f'</div><div class="answers">{_answer("Reference", s["reference"], "ref")}'
            f'{_answer("Base" + answer_flags(results, "base", i - 1), s["base"], "base")}'
            f'{_answer("Fine-tuned" + answer_flags(results, "finetuned", i - 1), s["finetuned"], "tuned")}'
            '</div></div>')
    versions = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items()
                         if k in ("tuneforge", "torch", "transformers", "peft"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>A/B report · {_e(results['name'])}</title>
<style>{CSS}</style></head>
<body><main>
<h1>A/B report: {_e(results['name'])}</h1>
<p class="meta">base <b>{_e(results['base_model'])}</b> vs fine-tuned <b>{_e(results['finetuned_model'])}</b>
 · method {_e(results['method'])} · backend {_e(results['backend'])}</p>
<p class="meta">{_e(results['n_examples'])} held-out test examples of <b>{_e(results['dataset'])}</b> ·
 decoding: {_e(decoding_text(results))} · run <code>{_e(results['run_dir'])}</code></p>
<p class="meta">hyperparameters: {_e(hparams_text(results))}</p>
<div class="verdict {tone}">{_e(headline(results))}</div>
<div class="cards">{''.join(cards)}</div>
{ladder_html(results)}
{rejected}
{preference_html(results)}
<h2>Metrics</h2>
{''.join(table)}
<p class="note">Loss and perplexity on the assistant tokens: lower is better. Exact match, BLEU, chrF and
 ROUGE-L (0–100): higher is better. Both models answered the same prompts with the same decoding settings.</p>
{by_cat}
<h2>Loss curves</h2>
{curve}
{probe_html}
<h2>Samples <span class="meta">({len(samples)} of {len(results['samples'])})</span></h2>
{''.join(samples)}
<footer>Generated {_e(results.get('created', ''))} by tuneforge eval · {_e(versions)}</footer>
</main></body></html>
"""


def write_reports(run_dir: Path, results: dict[str, Any]) -> dict[str, Path]:
    """loss_curve.png, report.md and report.html in ``run_dir``, each written atomically."""
    from tuneforge.rundir import atomic_write_bytes, atomic_write_text

    png = loss_curve_png(run_dir, results)
    paths = {"markdown": run_dir / "report.md", "html": run_dir / "report.html"}
    if png:
        atomic_write_bytes(run_dir / "loss_curve.png", png)
        paths["png"] = run_dir / "loss_curve.png"
    atomic_write_text(paths["markdown"], render_markdown(results, has_curve=bool(png)) + "\n")
    atomic_write_text(paths["html"], render_html(results, png))
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tuneforge.evaluation.report <run_dir>", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    results = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    for path in write_reports(run_dir, results).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
