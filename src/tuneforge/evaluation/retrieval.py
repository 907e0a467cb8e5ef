"""Retrieval evaluation of an embedding run (backend=sentence-transformers): base vs fine-tuned.

sentence-transformers' ``InformationRetrievalEvaluator`` scores the held-out test queries against the whole
answer corpus (every positive of train + val + test, what a RAG retriever searches): hit@1/@3/@10 (the
answer is among the top k), MRR@10 and NDCG@10, overall and per category (the same evaluator on each
category's queries, reusing the corpus embeddings). Written to eval.json, report.md and report.html (the
verdict first, as in the LLM A/B report). ``tuneforge search`` ranks the corpus for one query.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

METRICS = (("hit@1", "Hit@1"), ("hit@3", "Hit@3"), ("hit@10", "Hit@10"), ("mrr@10", "MRR@10"),
           ("ndcg@10", "NDCG@10"))
HEADLINE = "mrr@10"
N_SAMPLES = 8


def _score(model: Any, evaluator: Any, by_category: dict[str, Any], tmp: Path) -> tuple[dict, dict, list]:
    """(overall metrics, per-category metrics, top-3 per query) for one model."""
    from tuneforge.backends.sentence_transformers import retrieval_metrics

    corpus_emb = evaluator.embed_inputs(model, evaluator.corpus, encode_fn_name="document")
    overall = retrieval_metrics(evaluator(model, output_path=str(tmp), corpus_embeddings=corpus_emb), "test")
    cats = {c: retrieval_metrics(ev(model, corpus_embeddings=corpus_emb), ev.name) for c, ev in by_category.items()}
    pred_file = next(tmp.glob("*predictions_cosine.jsonl"), None)
    preds = [json.loads(line) for line in pred_file.open(encoding="utf-8")] if pred_file else []
    return overall, cats, preds


def evaluate_retrieval(art: Any, *, quiet: bool = False, write_report: bool = True) -> dict[str, Any]:
    """``art``: an opened run (tuneforge.evaluation.artifacts.RunArtifacts) trained by sentence-transformers."""
    from tuneforge.backends.sentence_transformers import data_shape, ir_data, ir_evaluator, load_embedding_model
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.rundir import atomic_write_json, versions

    t0 = time.perf_counter()
    run = art.run
    if data_shape(run) == "scored_pairs":
        raise ConfigError(f"dataset {run.dataset.name!r} is scored pairs (graded similarity): retrieval eval needs "
                          "queries with a relevant passage (pairs or triplets); scored-pair eval is not built yet")
    data = prepare_splits(run.dataset)
    queries, corpus, relevant, query_cat = ir_data(run, data.test)
    if not queries:
        raise DataError(f"dataset {run.dataset.name!r}: the test split ({data.test}) is empty; "
                        f"set dataset.split.test > 0 (now {run.dataset.split.test})")
    batch = max(run.eval.batch_size, 32)
    evaluator = ir_evaluator(queries, corpus, relevant, name="test", batch_size=batch, write_predictions=True)
    by_category = {}
    for cat in sorted({c for c in query_cat.values() if c}):
        q = {k: v for k, v in queries.items() if query_cat[k] == cat}
        by_category[cat] = ir_evaluator(q, corpus, {k: relevant[k] for k in q}, name=f"test-{cat}", batch_size=batch)
    sides: dict[str, dict[str, float]] = {}
    cats: dict[str, dict[str, dict[str, float]]] = {}
    preds: dict[str, list] = {}
    for side, path in (("base", None), ("finetuned", art.weights)):
        model = load_embedding_model(run, path)
        with tempfile.TemporaryDirectory() as tmp:
            sides[side], cats[side], preds[side] = _score(model, evaluator, by_category, Path(tmp))
        del model
    delta = {k: sides["finetuned"][k] - sides["base"][k] for k, _ in METRICS}
    n_per_cat = {c: len(ev.queries) for c, ev in by_category.items()}
    results: dict[str, Any] = {
        "kind": "retrieval",
        "run_dir": str(art.run_dir),
        "created": datetime.now().isoformat(timespec="seconds"),
        "split": "test",
        "n_queries": len(evaluator.queries),
        "n_examples": len(evaluator.queries),
        "corpus_size": len(corpus),
        "name": run.name,
        "method": run.method.name,
        "model": run.model.name_or_path,
        "backend": run.backend.name,
        "dataset": run.dataset.name,
        "base_model": run.model.name_or_path,
        "finetuned_model": f"{art.weights.name}/",
        "evaluator": "sentence_transformers InformationRetrievalEvaluator (cosine)",
        "base": sides["base"],
        "finetuned": sides["finetuned"],
        "delta": delta,
        "improved": [k for k, _ in METRICS if delta[k] > 0],
        "categories": {c: {"n_queries": n_per_cat[c], "base": cats["base"][c], "finetuned": cats["finetuned"][c],
                           "delta": {k: cats["finetuned"][c][k] - cats["base"][c][k] for k, _ in METRICS}}
                       for c in by_category},
        "samples": _samples(evaluator, corpus, relevant, preds, query_cat),
        "seconds": round(time.perf_counter() - t0, 3),
        "versions": versions(),
    }
    atomic_write_json(art.run_dir / "eval.json", results)
    if write_report:
        from tuneforge.rundir import atomic_write_text

        atomic_write_text(art.run_dir / "report.md", render_markdown(results) + "\n")
        atomic_write_text(art.run_dir / "report.html", render_html(results))
    if not quiet:
        print(metrics_text(results))
        print(f"  eval.json   {art.run_dir / 'eval.json'}")
        if write_report:
            print(f"  report      {art.run_dir / 'report.html'}  (and report.md)")
    return results


def _samples(evaluator: Any, corpus: dict[str, str], relevant: dict[str, set[str]], preds: dict[str, list],
             query_cat: dict[str, str]) -> list[dict[str, Any]]:
    """The first queries with each model's top 3 and the rank of the right answer (None: not in the top 10)."""
    out = []
    by_id = {side: {p["query_id"]: p["results"] for p in rows} for side, rows in preds.items()}
    for qid in evaluator.queries_ids[:N_SAMPLES]:
        rel = relevant[qid]
        item: dict[str, Any] = {"query": evaluator.queries[evaluator.queries_ids.index(qid)],
                                "category": query_cat.get(qid, ""), "answer": corpus[next(iter(rel))]}
        for side, results in by_id.items():
            ranked = results.get(qid, [])
            rank = next((i + 1 for i, r in enumerate(ranked) if r["corpus_id"] in rel), None)
            item[side] = {"rank": rank, "top": [{"text": corpus[r["corpus_id"]], "score": round(r["score"], 4),
                                                 "relevant": r["corpus_id"] in rel} for r in ranked[:3]]}
        out.append(item)
    return out


# --- rendering ---------------------------------------------------------------------------------------------

def _verdict(results: dict[str, Any]) -> tuple[str, str]:
    """(headline, tone: '' good | mixed | worse)."""
    b, f = results["base"][HEADLINE], results["finetuned"][HEADLINE]
    wins = sum(results["delta"][k] > 5e-5 for k, _ in METRICS)
    losses = sum(results["delta"][k] < -5e-5 for k, _ in METRICS)
    text = (f"Fine-tuned is better on {wins} of {len(METRICS)} retrieval metrics; MRR@10 {b:.3f} → {f:.3f} "
            f"({f - b:+.3f}) on {results['n_queries']} held-out queries against {results['corpus_size']} passages.")
    tone = "" if wins > len(METRICS) // 2 and losses == 0 else ("worse" if wins == 0 else "mixed")
    return text, tone


def metrics_text(results: dict[str, Any]) -> str:
    lines = ["", f"tuneforge eval: {results['name']}  ({results['n_queries']} test queries, corpus "
                 f"{results['corpus_size']} passages)",
             f"  {'metric':<12}{'base':>10}{'fine-tuned':>12}{'difference':>12}"]
    for k, label in METRICS:
        lines.append(f"  {label:<12}{results['base'][k]:>10.4f}{results['finetuned'][k]:>12.4f}"
                     f"{results['delta'][k]:>+12.4f}")
    if results["categories"]:
        lines.append("  per category (MRR@10): " + ", ".join(
            f"{c} {v['base']['mrr@10']:.3f}→{v['finetuned']['mrr@10']:.3f}" for c, v in results["categories"].items()))
    lines.append("  " + _verdict(results)[0])
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    out = [f"# Retrieval report: {results['name']}", "", f"**{_verdict(results)[0]}**", "",
           f"- run: `{results['run_dir']}`",
           f"- base: {results['base_model']}; fine-tuned: {results['finetuned_model']} (method {results['method']}, "
           f"backend {results['backend']})",
           f"- data: {results['n_queries']} held-out test queries of `{results['dataset']}`, corpus of "
           f"{results['corpus_size']} passages; {results['evaluator']}", "",
           "## Metrics", "", "| Metric | Base | Fine-tuned | Difference |", "|---|---:|---:|---:|"]
    for k, label in METRICS:
        out.append(f"| {label} | {results['base'][k]:.4f} | {results['finetuned'][k]:.4f} | "
                   f"{results['delta'][k]:+.4f} |")
    if results["categories"]:
        out += ["", "## Per category", "", "| Category | Queries | " + " | ".join(
            f"{label} base → fine-tuned" for _, label in METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
        for c, v in results["categories"].items():
            out.append(f"| {c} | {v['n_queries']} | " + " | ".join(
                f"{v['base'][k]:.3f} → {v['finetuned'][k]:.3f}" for k, _ in METRICS) + " |")
    out += ["", "Hit@k: the right passage is among the top k. All metrics: higher is better."]
    return "\n".join(out)


def render_html(results: dict[str, Any]) -> str:
    from tuneforge.evaluation.report import CSS, _e

    text, tone = _verdict(results)
    cards = "".join(
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value">{results["finetuned"][k]:.3f}</div><div class="base">base {results["base"][k]:.3f}</div>'
        f'<div class="delta {_tone(results["delta"][k])}">{results["delta"][k]:+.3f}</div></div>'
        for k, label in METRICS)
    rows = "".join(
        f'<tr><td>{_e(label)}</td><td class="num">{results["base"][k]:.4f}</td>'
        f'<td class="num">{results["finetuned"][k]:.4f}</td>'
        f'<td><span class="delta {_tone(results["delta"][k])}">{results["delta"][k]:+.4f}</span></td></tr>'
        for k, label in METRICS)
    cat_rows = "".join(
        f'<tr><td>{_e(c)}</td><td class="num">{v["n_queries"]}</td>' + "".join(
            f'<td class="num">{v["base"][k]:.3f} → {v["finetuned"][k]:.3f} '
            f'<span class="delta {_tone(v["delta"][k])}">({v["delta"][k]:+.3f})</span></td>' for k, _ in METRICS)
        + "</tr>" for c, v in results["categories"].items())
    heads = "".join(f"<th>{_e(label)}</th>" for _, label in METRICS)
    samples = []
    for i, s in enumerate(results["samples"], 1):
        cols = []
        for side, title, cls in (("base", "Base", "base"), ("finetuned", "Fine-tuned", "tuned")):
            r = s.get(side, {"rank": None, "top": []})
            rank = f"right answer at rank {r['rank']}" if r["rank"] else "right answer not in the top 10"
            top = "".join(f'<p class="{"better" if t["relevant"] else ""}">{j}. ({t["score"]:.3f}) {_e(t["text"])}</p>'
                          for j, t in enumerate(r["top"], 1))
            cols.append(f'<div class="answer {cls}"><h3>{title}: {_e(rank)}</h3>{top}</div>')
        samples.append(f'<div class="sample"><div class="prompt"><span class="n">#{i}</span>{_e(s["query"])}'
                       f'<span class="system">category {_e(s["category"])}</span></div><div class="answers">'
                       f'<div class="answer ref"><h3>Right answer</h3><p>{_e(s["answer"])}</p></div>'
                       f'{"".join(cols)}</div></div>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Retrieval report · {_e(results['name'])}</title>
<style>{CSS}</style></head>
<body><main>
<h1>Retrieval report: {_e(results['name'])}</h1>
<p class="meta">base <b>{_e(results['base_model'])}</b> vs fine-tuned <b>{_e(results['finetuned_model'])}</b>
 · method {_e(results['method'])} · backend {_e(results['backend'])}</p>
<p class="meta">{results['n_queries']} held-out test queries of <b>{_e(results['dataset'])}</b> against
 {results['corpus_size']} passages · {_e(results['evaluator'])} · run <code>{_e(results['run_dir'])}</code></p>
<div class="verdict {tone}">{_e(text)}</div>
<div class="cards">{cards}</div>
<h2>Metrics</h2>
<table class="metrics"><thead><tr><th>Metric</th><th>Base</th><th>Fine-tuned</th><th>Difference</th></tr></thead>
<tbody>{rows}</tbody></table>
<p class="note">Hit@k: the right passage is among the top k. MRR@10: mean reciprocal rank of the right passage
 (0 beyond rank 10). NDCG@10: rank-discounted gain. Higher is better for all.</p>
<h2>Per category</h2>
<table class="metrics"><thead><tr><th>Category</th><th>Queries</th>{heads}</tr></thead><tbody>{cat_rows}</tbody></table>
<h2>Samples <span class="meta">(top 3 of each model)</span></h2>
{''.join(samples)}
<footer>Generated {_e(results.get('created', ''))} by tuneforge eval</footer>
</main></body></html>
"""


def _tone(delta: float) -> str:
    return "better" if delta > 5e-5 else "worse" if delta < -5e-5 else "same"


# --- search ------------------------------------------------------------------------------------------------

def cmd_search(args: list[str]) -> int:
    """tuneforge search run=<run_dir> query="..." [k=5] [base=true]: the top passages of the corpus."""
    from sentence_transformers.util import semantic_search

    from tuneforge.backends.sentence_transformers import ir_data, load_embedding_model
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.evaluation.artifacts import open_run
    from tuneforge.evaluation.run_args import parse_run_args

    parsed = parse_run_args("search", args, {"query": "the text to search for", "k": "how many passages (5)",
                                             "model": "finetuned (default) or base"})
    query = parsed.options.get("query", "").strip()
    if not query:
        raise ConfigError('tuneforge search: query="..." is required, e.g. tuneforge search run=DIR '
                          'query="Đi cáp treo hết bao nhiêu tiền?"')
    try:
        k = int(parsed.options.get("k", "5"))
    except ValueError:
        raise ConfigError(f"tuneforge search: k={parsed.options['k']!r} must be a positive integer") from None
    which = parsed.options.get("model", "finetuned")
    if k < 1 or which not in ("finetuned", "base"):
        raise ConfigError("tuneforge search: k must be >= 1 and model one of: finetuned, base")
    art = open_run(parsed.run_dir, parsed.options.get("base"))
    from tuneforge.backends.registry import get_backend

    if get_backend(art.run.backend.name).task != "embedding":
        raise ConfigError(f"tuneforge search: {art.run_dir} was trained by backend={art.run.backend.name}, not an "
                          "embedding model; search ranks passages with an embedding run (recipe=embed-minilm). "
                          "For a chat model use: tuneforge chat run=...")
    data = prepare_splits(art.run.dataset)
    _, corpus, _, _ = ir_data(art.run, data.test)
    model = load_embedding_model(art.run, art.weights if which == "finetuned" else None)
    texts = list(corpus.values())
    hits = semantic_search(model.encode_query([query], convert_to_tensor=True),
                           model.encode_document(texts, convert_to_tensor=True), top_k=k)[0]
    print(f"query: {query}   ({which} model, {len(texts)} passages of {art.run.dataset.name})")
    for i, h in enumerate(hits, 1):
        print(f"{i:>3}. {h['score']:.4f}  {texts[h['corpus_id']]}")
    return 0
