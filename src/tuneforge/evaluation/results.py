"""One eval.json for every generating backend (local models and hosted ones): the answer metrics of a side,
the A/B record (delta, what improved, samples, style, hyperparameters) and its publication (eval.json, then
report.md / report.html, then the summary table on the console)."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneforge.evaluation.metrics import JUDGED, METRICS, generation_metrics
from tuneforge.schema.evaluation import EvalConfig
from tuneforge.schema.run import RunConfig


def answer_metrics(run: RunConfig, answers: list[str], references: list[str], new_tokens: list[int],
                   cfg: EvalConfig, prompts: list[str] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics of one side's answers, its style record): overlap metrics, length, style rate, fact guard."""
    from tuneforge.evaluation.answer_checks import review_answers
    from tuneforge.evaluation.style import score_style

    style = score_style(run.dataset, answers, references, new_tokens, cfg.max_new_tokens)
    style["review"] = review_answers(run.dataset, answers, references=list(references),
                                     prompts=list(prompts) if prompts is not None else list(references),
                                     new_tokens=new_tokens, max_new_tokens=cfg.max_new_tokens)
    metrics: dict[str, float] = {"usable_rate": style["review"]["usable_rate"],
                                 **generation_metrics(answers, references),
                                 "avg_new_tokens": sum(new_tokens) / len(new_tokens) if new_tokens else 0.0}
    if style["style_rate"] is not None:
        metrics["style_rate"] = 100 * style["style_rate"]
    metrics["forbidden_claims"] = len(style["forbidden_claims"])
    return metrics, style


def ab_results(run: RunConfig, run_dir: Path, cfg: EvalConfig, examples: list[Any], *,
               sides: dict[str, dict[str, float]], answers: dict[str, list[str]], style: dict[str, Any],
               base_desc: str, tuned_desc: str, t0: float, **extra: Any) -> dict[str, Any]:
    """The eval.json record of a base-vs-fine-tuned comparison (``extra``: backend-specific fields)."""
    from tuneforge.rundir import versions

    delta = {m.key: sides["finetuned"][m.key] - sides["base"][m.key] for m in METRICS
             if m.key in sides["base"] and m.key in sides["finetuned"]}
    better = [m.key for m in JUDGED if m.key in delta
              and (delta[m.key] < 0 if not m.higher_is_better else delta[m.key] > 0)]
    h = run.hparams
    return {
        "run_dir": str(run_dir),
        "created": datetime.now().isoformat(timespec="seconds"),
        "split": cfg.split,
        "n_examples": len(examples),
        "name": run.name,
        "method": run.method.name,
        "model": run.model.name_or_path,
        "backend": run.backend.name,
        "dataset": run.dataset.name,
        "base_model": base_desc,
        "finetuned_model": tuned_desc,
        "decoding": {**{k: v for k, v in asdict(cfg).items() if k != "after_training"}, "seed": h.seed},
        "base": sides["base"],
        "finetuned": sides["finetuned"],
        "delta": delta,
        "improved": better,
        "style": style,
        "hyperparameters": {"method": run.method.name, "r": getattr(run.method, "r", None), "lr": run.optim.lr,
                            "max_steps": h.max_steps, "epochs": h.epochs, "micro_batch_size": h.micro_batch_size,
                            "seq_len": h.seq_len, "packing": h.packing, "seed": h.seed},
        "random_init_base": run.model.tiny is not None,
        **extra,
        "by_category": category_breakdown(run, examples, answers),
        "samples": [{"system": ex.system, "prompt": ex.prompt, "reference": ex.reference,
                     "category": getattr(ex, "category", None),
                     "base": answers["base"][i], "finetuned": answers["finetuned"][i]}
                    for i, ex in enumerate(examples)],
        "seconds": round(time.perf_counter() - t0, 3),
        "versions": versions(),
    }


def category_breakdown(run: RunConfig, examples: list[Any], answers: dict[str, list[str]]) -> dict[str, Any]:
    """Per category of the test examples: count, ROUGE-L and chrF, the style rate and forbidden claims, per side.

    Empty when the examples carry no category (a dataset without ``fields.category``)."""
    from tuneforge.evaluation.style import score_style

    cats: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        c = getattr(ex, "category", None)
        if c is not None:
            cats.setdefault(c, []).append(i)
    out: dict[str, Any] = {}
    for cat, idx in sorted(cats.items()):
        refs = [examples[i].reference for i in idx]
        row: dict[str, Any] = {"n": len(idx)}
        for side in ("base", "finetuned"):
            preds = [answers[side][i] for i in idx]
            g = generation_metrics(preds, refs)
            st = score_style(run.dataset, preds, refs)
            row[side] = {"rouge_l": g["rouge_l"], "chrf": g["chrf"],
                         "style_rate": None if st["style_rate"] is None else 100 * st["style_rate"],
                         "forbidden_claims": len(st["forbidden_claims"])}
        out[cat] = row
    return out


def publish_results(run_dir: Path, results: dict[str, Any], *, write_report: bool, quiet: bool,
                    notes: tuple[str, ...] = ()) -> None:
    """eval.json (atomically), then the reports, then the table on the console (``notes``: extra lines)."""
    from tuneforge.rundir import atomic_write_json

    name = "eval.json" if results.get("split", "test") == "test" else f"eval-{results['split']}.json"
    atomic_write_json(run_dir / name, results)
    write_report = write_report and name == "eval.json"  # the report is the test split's verdict
    if write_report:
        from tuneforge.evaluation.report import write_reports

        write_reports(run_dir, results)
    if not quiet:
        from tuneforge.evaluation.report import metrics_table_text

        print(metrics_table_text(results))
        for line in notes:
            print(f"  {line}")
        print(f"  {name:<11} {run_dir / name}")
        if write_report:
            print(f"  report      {run_dir / 'report.html'}  (and report.md)")
