"""report.json (machine-readable) and the human summary printed by ``tuneforge data`` and ``plan``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.data.lint import EXIT_MEANING, RULES, FindingLog, finding_text
from tuneforge.data.stats import OPENAI_TRAINING_PRICES, cost_epochs, openai_cost
from tuneforge.schema.dataset import DatasetConfig

if TYPE_CHECKING:
    from tuneforge.data.pipeline import PipelineResult
    from tuneforge.schema.run import RunConfig

REPORT_VERSION = 1
_SHOW_PER_RULE = 10


def _without(log: FindingLog, rule: str) -> FindingLog:
    out = FindingLog(log.file, log.cap)
    for r, n in log.counts.items():
        if r != rule:
            out.counts[r] = n
            out.items[r] = list(log.items.get(r, []))
    return out


def build_report(ds: DatasetConfig, src: Path, result: PipelineResult, out_dir: Path | None, *,
                 run: RunConfig | None = None, with_tokens: bool, fmt: str | None = None) -> dict[str, Any]:
    """The report of one pipeline run. Without tokens, the tokenizer-dependent finding (D020) is left out."""
    log = result.log if with_tokens else _without(result.log, "D020")
    files = dict(result.files)
    if out_dir is not None:  # files were written in a temporary directory that becomes out_dir
        files = {k: str(out_dir / Path(v).name) for k, v in files.items()}
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "dataset": ds.name,
        "source": result.log.file,
        "format": fmt or ds.format,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(result.seconds, 3),
        "exit_status": log.exit_status,
        "status": EXIT_MEANING[log.exit_status],
        "counts": result.counts,
        "splits": result.sizes,
        "groups": result.groups,
        "split": {"train": ds.split.train, "val": ds.split.val, "test": ds.split.test, "seed": ds.split.seed,
                  "grouped_by": ds.fields.group or "source question"},
        "augmentation": {"method": ds.augment.method, "templates": len(ds.augment.templates),
                         "variants": ds.augment.variants, "keep_original": ds.augment.keep_original,
                         "seed": ds.augment.seed},
        "categories": result.categories,
        "findings": log.to_dict(),
        "files": files,
        "tokens": None,
        "cost": None,
    }
    if with_tokens and result.tokens is not None:
        report["tokens"] = result.tokens
        train = result.tokens["per_split"].get("train")
        if train is not None:  # a lint has no train split, so no training cost
            hparams = run.hparams if run is not None else None
            report["cost"] = openai_cost(train["total"], cost_epochs(hparams))
    return report


# --- human summary ------------------------------------------------------------------------------------


def _n(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def render_findings(report: dict[str, Any], per_rule: int = _SHOW_PER_RULE) -> list[str]:
    f = report["findings"]
    lines: list[str] = []
    shown: dict[str, int] = {}
    for item in f["items"]:
        if shown.get(item["rule"], 0) < per_rule:
            shown[item["rule"]] = shown.get(item["rule"], 0) + 1
            lines.append(finding_text(item["file"], item["line"], item["rule"], item["message"]))
    for rule, info in f["by_rule"].items():
        more = info["count"] - shown.get(rule, 0)
        if more > 0:
            lines.append(f"  ... {more:,} more {rule} ({info['name']})")
    return lines


def render_summary(report: dict[str, Any], *, paths: bool = True) -> str:
    c = report["counts"]
    f = report["findings"]
    out = [f"== {report['dataset']}: {report['source']} ({report['format']})"]
    out.append(f"source rows   {_n(c['source_in'])} in = {_n(c['source_kept'])} kept + "
               f"{_n(c['source_rejected'])} rejected" + (f"   ({c['blank_lines']} blank lines skipped)"
                                                         if c.get("blank_lines") else ""))
    aug = report.get("augmentation", {})
    gen = f"{_n(c['examples_generated'])} generated"
    if aug.get("method", "none") != "none":
        gen += f" ({aug['method']}: up to {aug['variants']} variants + original per question)"
    out.append(f"examples      {gen} = {_n(c['examples_kept'])} kept + {_n(c['examples_rejected'])} rejected")
    if report.get("splits"):
        s, g = report["splits"], report.get("groups", {})
        out.append("splits        " + " / ".join(f"{k} {_n(v)}" for k, v in s.items())
                   + (f"   (groups: {' / '.join(str(g[k]) for k in s)}; grouped by "
                      f"{report['split']['grouped_by']}, seed {report['split']['seed']})" if g else ""))
    if report.get("categories"):
        cats = report["categories"]
        out.append("categories    " + ", ".join(f"{k} {sum(v.values())}" for k, v in sorted(cats.items())))
    tok = report.get("tokens")
    if tok and tok["per_example"].get("median") is None:  # no example was kept: nothing to measure
        out.append(f"tokens        ({tok['tokenizer']}, seq_len {tok['seq_len']}) no examples kept")
    elif tok:
        pe = tok["per_example"]
        out.append(f"tokens        ({tok['tokenizer']}, seq_len {tok['seq_len']}) "
                   + " / ".join(f"{k} {_n(v['total'])}" for k, v in tok["per_split"].items()))
        out.append(f"per example   min {pe['min']}  median {pe['median']:g}  p95 {pe['p95']:g}  max {pe['max']}"
                   f"   over seq_len: {tok['over_seq_len']}   over limit {tok['max_tokens']}: "
                   f"{tok['over_max_tokens']}")
        out.append(f"batching      padding waste {tok['padding_waste']:.1%} (micro batch {tok['micro_batch_size']})"
                   f"   packing efficiency {tok['packing_efficiency']:.1%} "
                   f"({tok.get('batching_measured_on', 'train split')})")
    cost = report.get("cost")
    if cost:
        out.extend(render_cost(cost))
    findings = render_findings(report)
    out.append(f"findings      {f['errors']} errors, {f['warnings']} warnings"
               + ("" if not f["by_rule"] else "   (" + ", ".join(
                   f"{r} {i['name']} x{i['count']}" for r, i in f["by_rule"].items()) + ")"))
    out.extend("  " + ln for ln in findings)
    if paths and report.get("files"):
        for k, v in report["files"].items():
            out.append(f"{k + ':':<14}{v}")
    status = report["exit_status"]
    out.append(f"status        {status} ({EXIT_MEANING[status]})   [0 clean, 1 warnings, 2 errors]")
    return "\n".join(out)


def render_cost(cost: dict[str, Any]) -> list[str]:
    epochs = cost["epochs"]
    lines = [(f"OpenAI fine-tuning cost, train split {_n(cost['train_tokens'])} tokens x {epochs:g} epochs "
             f"(prices as of {cost['as_of']}; OpenAI bills its own token count):"),
             f"  {'model':<26}{'$/1M train tok':>15}{'per epoch':>12}{f'x{epochs:g} epochs':>14}"]
    prices = OPENAI_TRAINING_PRICES["usd_per_1m_training_tokens"]
    for model, usd in cost["usd"].items():
        lines.append(f"  {model:<26}{prices.get(model, float('nan')):>15.2f}"
                     f"{cost['usd_per_epoch'][model]:>12.4f}{usd:>14.4f}")
    return lines


def rules_table() -> str:
    rows = ["| id | name | severity | action | meaning |", "|---|---|---|---|---|"]
    rows += [f"| {r.id} | {r.name} | {r.severity} | {r.action} | {r.summary} |" for r in RULES.values()]
    return "\n".join(rows)
