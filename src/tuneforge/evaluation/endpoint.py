"""``tuneforge eval endpoint=<base_url> model=<name> run=<dir> [eval.*]``: the answer checks of a local eval,
on the answers of any OpenAI-compatible chat-completions endpoint (``tuneforge serve``, vLLM, llama.cpp's
server, OpenAI itself, an ``ft:`` model included).

The run supplies the dataset, its test split and the eval settings. The answers come through the hosted eval's
own seam (:func:`~tuneforge.evaluation.hosted.hosted_answers`: one chat completion per test conversation, same
request, same seed) and are scored by the same :func:`~tuneforge.evaluation.results.answer_metrics`. Loss and
perplexity are not applicable (the API does not score a reference answer). The record goes to
``<run>/eval-endpoint/<model>.json`` (or ``out=``) with, when the run has a local ``eval.json``, its fine-tuned
numbers side by side: the same model served should reproduce them within decoding noise.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tuneforge.errors import ConfigError
from tuneforge.evaluation.hosted import NOT_APPLICABLE

OPTIONS = {
    "endpoint": "base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1",
    "model": "the model name the endpoint serves (see GET <endpoint>/models)",
    "api_key_env": "environment variable holding the endpoint's API key (default: TUNEFORGE_SERVE_API_KEY, "
                   "OPENAI_API_KEY for api.openai.com)",
    "out": "where the JSON record goes (default: <run>/eval-endpoint/<model>.json)",
}
COMPARED = ("usable_rate", "bleu", "chrf", "rouge_l", "avg_new_tokens", "style_rate", "forbidden_claims")


def endpoint_client(endpoint: str, key_env: str | None) -> Any:
    import openai

    url = urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(f"endpoint={endpoint!r} is not an http(s) base URL (e.g. http://127.0.0.1:8000/v1)")
    env = key_env or ("OPENAI_API_KEY" if url.hostname == "api.openai.com" else "TUNEFORGE_SERVE_API_KEY")
    if key_env and not os.environ.get(key_env):
        raise ConfigError(f"api_key_env={key_env}: that environment variable is not set")
    # a local server without a key ignores the header; the SDK insists on some value
    return openai.OpenAI(base_url=endpoint, api_key=os.environ.get(env) or "no-key", max_retries=2, timeout=900)


def evaluate_endpoint(run_dir: Path, endpoint: str, model: str, *, eval_config: Any = None,
                      key_env: str | None = None, out: Path | None = None, quiet: bool = False) -> dict[str, Any]:
    import json

    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.evaluation.hosted import hosted_answers
    from tuneforge.evaluation.results import answer_metrics
    from tuneforge.rundir import atomic_write_json, read_config, versions

    t0 = time.perf_counter()
    run = read_config(run_dir)
    cfg = eval_config or run.eval
    client = endpoint_client(endpoint, key_env)
    examples = load_test_examples(run, cfg.max_samples, cfg.split)
    got = hosted_answers(client, model, [ex.prompt_messages for ex in examples], cfg, run.hparams.seed, model)
    answers = [a for a, _ in got]
    metrics, style = answer_metrics(run, answers, [ex.reference for ex in examples], [n for _, n in got], cfg,
                                    [ex.prompt for ex in examples])
    metrics["seconds"] = round(time.perf_counter() - t0, 3)
    local_path = run_dir / ("eval.json" if cfg.split == "test" else f"eval-{cfg.split}.json")
    local = json.loads(local_path.read_text(encoding="utf-8")) if local_path.is_file() else None
    record = {
        "run_dir": str(run_dir), "endpoint": endpoint, "model": model, "dataset": run.dataset.name,
        "split": cfg.split, "n_examples": len(examples),
        "decoding": {"do_sample": cfg.do_sample, "temperature": cfg.temperature if cfg.do_sample else 0,
                     "top_p": cfg.top_p if cfg.do_sample else None, "max_completion_tokens": cfg.max_new_tokens,
                     "seed": run.hparams.seed,
                     "note": "repetition penalty and n-gram blocking are the server's defaults (tuneforge serve: "
                             "the run's eval settings)"},
        "endpoint_metrics": metrics,
        "not_applicable": {"loss": NOT_APPLICABLE, "perplexity": NOT_APPLICABLE},
        "local": None if local is None else {
            "file": str(local_path), "n_examples": local.get("n_examples"), "decoding": local.get("decoding"),
            "finetuned": {k: local["finetuned"].get(k) for k in COMPARED}},
        "style": style,
        "samples": [{"prompt": ex.prompt, "reference": ex.reference, "answer": answers[i],
                     "local_answer": (local["samples"][i]["finetuned"] if local and i < len(local.get("samples", []))
                                      and local["samples"][i]["prompt"] == ex.prompt else None)}
                    for i, ex in enumerate(examples)],
        "seconds": round(time.perf_counter() - t0, 3),
        "versions": versions(),
    }
    path = out or run_dir / "eval-endpoint" / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', model)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    if not quiet:
        print(endpoint_table(record))
        print(f"  record      {path}")
    return record


def endpoint_table(record: dict[str, Any]) -> str:
    local = (record.get("local") or {}).get("finetuned")
    lines = ["", f"tuneforge eval: {record['model']} at {record['endpoint']}  ({record['n_examples']} "
                 f"{record['split']} examples, {'sampling' if record['decoding']['do_sample'] else 'greedy'})",
             f"  {'metric':<22}{'endpoint':>12}" + (f"{'local eval.json':>18}{'difference':>12}" if local else "")]
    for key in COMPARED:
        v = record["endpoint_metrics"].get(key)
        if v is None:
            continue
        row = f"  {key:<22}{v:>12.2f}"
        if local and local.get(key) is not None:
            row += f"{local[key]:>18.2f}{v - local[key]:>+12.2f}"
        lines.append(row)
    if local and record["local"]["n_examples"] != record["n_examples"]:
        lines.append(f"  note: local eval.json scored {record['local']['n_examples']} examples, this "
                     f"{record['n_examples']}: compare with eval.max_samples={record['local']['n_examples']}")
    lines.append("  test loss / perplexity: not applicable over an API")
    return "\n".join(lines)


def cmd_eval_endpoint(args: list[str]) -> int:
    from tuneforge.evaluation.run_args import eval_config_with, parse_run_args
    from tuneforge.rundir import read_config

    parsed = parse_run_args("eval", args, OPTIONS)
    for key in ("endpoint", "model"):
        if not parsed.options.get(key):
            raise ConfigError(f"tuneforge eval endpoint=...: {key}=<{OPTIONS[key].split(',')[0]}> is required")
    cfg = eval_config_with(read_config(parsed.run_dir).eval, parsed.eval_overrides)
    out = Path(parsed.options["out"]).expanduser() if parsed.options.get("out") else None
    evaluate_endpoint(parsed.run_dir.resolve(), parsed.options["endpoint"].rstrip("/"), parsed.options["model"],
                      eval_config=cfg, key_env=parsed.options.get("api_key_env"), out=out)
    return 0
