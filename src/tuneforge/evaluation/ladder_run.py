"""The ladder's eval.json and report sections, for a local run and a hosted (OpenAI) one.

eval.json keeps its A/B shape (``base`` / ``finetuned`` are the zero-shot arms, so the usual report reads it)
and gains ``ladder`` (one entry per arm), ``faithfulness`` (one record per RAG arm), ``ladder_verdict`` and
``retriever``. Loss is not measured by the ladder (it compares answers): ``tuneforge eval`` without
``eval.ladder`` measures it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tuneforge.evaluation.ladder import LocalEngine
from tuneforge.schema.evaluation import EvalConfig

log = logging.getLogger(__name__)

NO_LOSS = "not measured by the ladder (eval.ladder=true compares answers); run tuneforge eval without it for the loss"


def ladder_results(run: Any, run_dir: Path, cfg: EvalConfig, examples: list[Any], out: dict[str, Any], *,
                   base_desc: str, tuned_desc: str, t0: float) -> dict[str, Any]:
    from tuneforge.evaluation.ladder import ladder_entries, ladder_verdict
    from tuneforge.evaluation.results import ab_results

    arms = out["arms"]
    # the A/B record's two sides: the zero-shot arms, or the nearest arm measured of that model
    pick = {side: next((a for a in (side, f"{side}+rag", f"{side}+few-shot") if a in arms), next(iter(arms)))
            for side in ("base", "finetuned")}
    sides = {s: dict(arms[a]["metrics"]) for s, a in pick.items()}
    results = ab_results(run, run_dir, cfg, examples, sides=sides,
                         answers={s: arms[a]["answers"] for s, a in pick.items()},
                         style={s: arms[a]["style"] for s, a in pick.items()}, base_desc=base_desc,
                         tuned_desc=tuned_desc, t0=t0, not_applicable={"loss": NO_LOSS, "perplexity": NO_LOSS})
    ladder = ladder_entries(arms, out["faithfulness"])
    init_run = getattr(getattr(run, "init", None), "run", None)
    starting = f"{Path(init_run).parent.name}/{Path(init_run).name}" if init_run else None
    results.update({"ladder": ladder, "faithfulness": out["faithfulness"],
                    "ladder_verdict": ladder_verdict(ladder, starting),
                    "retriever": out["retriever"], "few_shot": out["few_shot"],
                    "ladder_answers": {arm: rec["answers"] for arm, rec in arms.items()},
                    "ladder_reviews": {arm: rec["style"]["review"]["reasons"] for arm, rec in arms.items()}})
    return results


def evaluate_local_ladder(art: Any, cfg: EvalConfig, engine: LocalEngine, *, quiet: bool = False,
                          write_report: bool = True) -> dict[str, Any]:
    """``engine``: tuneforge eval's own model loading and generation (passed in by the runner)."""
    from tuneforge.evaluation.artifacts import load_run_tokenizer
    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.evaluation.ladder import local_models, run_ladder
    from tuneforge.evaluation.results import publish_results

    t0 = time.perf_counter()
    run = art.run
    tokenizer = load_run_tokenizer(art)
    examples = load_test_examples(run, cfg.max_samples, cfg.split)
    log.info("ladder on %d held-out questions of %s", len(examples), art.run_dir)
    with local_models(art, tokenizer, cfg, engine) as models:
        base_desc, tuned_desc = models.pop("_desc")
        out = run_ladder(run, cfg, examples, models)
    results = ladder_results(run, art.run_dir, cfg, examples, out, base_desc=base_desc, tuned_desc=tuned_desc, t0=t0)
    publish_results(art.run_dir, results, write_report=write_report, quiet=quiet)
    if not quiet:
        from tuneforge.evaluation.ladder_report import ladder_text

        print(ladder_text(results))
    return results


def evaluate_hosted_ladder(run_dir: Path, cfg: EvalConfig, hosted: tuple[Any, str, str], request: Any, *,
                           quiet: bool = False, write_report: bool = True) -> dict[str, Any]:
    """The ladder through chat completions: the base model (e.g. gpt-4o-mini) zero-shot, few-shot and with RAG,
    the fine-tuned model with and without RAG. ``hosted``: (run config, base model, fine-tuned model);
    ``request``: the chat completion request of ``tuneforge eval`` (same decoding)."""
    from contextlib import contextmanager

    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.evaluation.ladder import run_ladder
    from tuneforge.evaluation.results import publish_results
    from tuneforge.openai_api import make_client

    t0 = time.perf_counter()
    run, base_model, tuned_model = hosted
    client = make_client(run.backend)
    examples = load_test_examples(run, cfg.max_samples, cfg.split)

    def factory(model: str) -> Any:
        @contextmanager
        def make() -> Any:
            yield lambda prompts, desc: hosted_answers_with_usage(client, model, prompts, cfg, run.hparams.seed,
                                                                       request)
        return make

    out = run_ladder(run, cfg, examples, {"base": factory(base_model), "finetuned": factory(tuned_model)})
    results = ladder_results(run, run_dir, cfg, examples, out, t0=t0,
                             base_desc=f"{base_model} (OpenAI chat completions)",
                             tuned_desc=f"{tuned_model} (OpenAI chat completions)")
    publish_results(run_dir, results, write_report=write_report, quiet=quiet)
    if not quiet:
        from tuneforge.evaluation.ladder_report import ladder_text

        print(ladder_text(results))
    return results


def hosted_answers_with_usage(client: Any, model: str, prompts: list[list[dict]], cfg: EvalConfig,
                              seed: int, request: Any) -> list[tuple[str, int, int]]:
    """(answer, completion tokens, prompt tokens) per prompt: the API's own usage counts."""
    import openai

    from tuneforge.openai_api import api_error

    out = []
    for messages in prompts:
        try:
            resp = client.chat.completions.create(**request(model, messages, cfg, seed))
        except openai.OpenAIError as exc:
            raise api_error(exc, f"chat completion with {model}") from None
        text = (resp.choices[0].message.content or "").strip()
        usage = resp.usage
        out.append((text, usage.completion_tokens if usage else len(text.split()),
                    usage.prompt_tokens if usage else 0))
    return out
