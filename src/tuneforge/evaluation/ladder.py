"""``tuneforge eval run=<dir> eval.ladder=true``: "should I fine-tune?", measured on the run's own data.

Five arms answer the same held-out questions (``eval.max_samples`` of the test split) with the same decoding and
the same checks (usable answer, style, fact guard, ROUGE-L; tuneforge.evaluation.results.answer_metrics):

    base            the base model, zero-shot
    base+few-shot   the base model with ``eval.few_shot`` conversations of the train split before the question
    base+rag        the base model with the top ``eval.retriever.k`` passages (dataset.rag template)
    finetuned       the fine-tuned model, zero-shot
    finetuned+rag   the fine-tuned model with the same passages

Per arm: those metrics, the prompt tokens it spends per answer (few-shot and RAG prompts are longer, and
inference pays for them), its wall time, and ``value_rate``: of the questions whose reference carries a
checkable value (price, distance, hour...), the share of answers that carry one of the reference's values. The
RAG arms also answer the counterfactual questions (tuneforge.evaluation.faithfulness). The verdict is computed
from the numbers (:func:`ladder_verdict`).

An answerer is a function ``(prompts, desc) -> [(answer, new tokens, prompt tokens)]``: the local model's
batched ``generate`` or chat completions of a hosted model, so the same ladder serves both.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.passages import value_keys
from tuneforge.schema.evaluation import LADDER_ARMS, EvalConfig
from tuneforge.schema.run import RunConfig

Answerer = Callable[[list[list[dict]], str], list[tuple[str, int, int]]]
# (arm, model side, prompt kind)
ARMS = (("base", "base", "plain"), ("base+few-shot", "base", "few-shot"), ("base+rag", "base", "rag"),
        ("finetuned", "finetuned", "plain"), ("finetuned+rag", "finetuned", "rag"))
RAG_ARMS = ("base+rag", "finetuned+rag")
assert tuple(a for a, _, _ in ARMS) == LADDER_ARMS
TARGET_FAITHFUL, TARGET_USABLE = 90.0, 80.0


def few_shot_turns(run: RunConfig, k: int) -> list[dict]:
    """``k`` user/assistant pairs from the train split: one per category first, each a different answer."""
    from tuneforge.data.pipeline import split_categories
    from tuneforge.data.prepare import prepare_splits

    if k == 0:
        return []
    path = Path(prepare_splits(run.dataset).train)
    cats = split_categories(path) or []
    pairs: list[tuple[str | None, list[dict]]] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if line.strip():
                msgs = [m for m in json.loads(line)["messages"] if m.get("role") in ("user", "assistant")]
                if len(msgs) >= 2:
                    pairs.append((cats[n] if n < len(cats) else None, msgs[:2]))
    chosen: list[list[dict]] = []
    seen_cat: set[Any] = set()
    seen_ans: set[str] = set()
    for pass_ in (0, 1):  # first one per category, then any other answer
        for cat, msgs in pairs:
            if len(chosen) < k and msgs[1]["content"] not in seen_ans and (pass_ or cat not in seen_cat):
                chosen.append(msgs)
                seen_cat.add(cat)
                seen_ans.add(msgs[1]["content"])
    return [m for pair in chosen for m in pair]


def _with_few_shot(messages: list[dict], shots: list[dict]) -> list[dict]:
    head = [m for m in messages if m.get("role") == "system"]
    return [*head, *shots, *[m for m in messages if m.get("role") != "system"]]


def arm_prompts(run: RunConfig, kind: str, examples: list[Any], shots: list[dict],
                retrieved: list[list[str]]) -> list[list[dict]]:
    from tuneforge.evaluation.rag import rag_prompt, with_user_turn

    prompts = [ex.prompt_messages for ex in examples]
    if kind == "few-shot":
        return [_with_few_shot(p, shots) for p in prompts]
    if kind == "rag":
        return [with_user_turn(p, rag_prompt(run.dataset, ex.prompt, r))
                for p, ex, r in zip(prompts, examples, retrieved)]
    return prompts


def value_rate(answers: list[str], references: list[str]) -> float | None:
    """Of the references with a checkable value, the share (0-100) of answers carrying one of its values."""
    judged = [(a, value_keys(r)) for a, r in zip(answers, references) if value_keys(r)]
    return 100.0 * sum(bool(value_keys(a) & v) for a, v in judged) / len(judged) if judged else None


def run_ladder(run: RunConfig, cfg: EvalConfig, examples: list[Any],
               models: dict[str, Callable[[], AbstractContextManager[Answerer]]]) -> dict[str, Any]:
    """Every arm (and the counterfactual questions of the RAG arms) with ``models[side]()`` as its answerer.

    Returns {"arms": {arm: {metrics, answers, style}}, "faithfulness": {...}, "retriever": {...}}."""
    from tuneforge.data.passages import load_passages
    from tuneforge.evaluation.answer_checks import review_answers
    from tuneforge.evaluation.faithfulness import build_cases, faithfulness_record
    from tuneforge.evaluation.rag import load_retriever, with_knowledge_base
    from tuneforge.evaluation.results import answer_metrics

    run = dataclasses.replace(run, dataset=with_knowledge_base(run.dataset))
    passages = load_passages(run.dataset)
    retriever = load_retriever(run.dataset, cfg.retriever, passages)
    k = cfg.retriever.k
    hits = retriever.search([ex.prompt for ex in examples], k)
    retrieved = [[h.passage.text for h in hs] for hs in hits]
    shots = few_shot_turns(run, cfg.few_shot)
    refs = [ex.reference for ex in examples]
    cases = build_cases(refs, passages)
    # the changed passage first, then the other retrieved passages (distractors), k in all
    cf_retrieved = [[c.passage, *[h.passage.text for h in hits[c.index] if h.passage.id != c.passage_id]][:k]
                    for c in cases]
    cf_prompts = arm_prompts(run, "rag", [examples[c.index] for c in cases], shots, cf_retrieved)
    arms: dict[str, dict[str, Any]] = {}
    faith: dict[str, Any] = {}
    for side in ("base", "finetuned"):
        if not any(arm in cfg.ladder_arms for arm, s, _ in ARMS if s == side):
            continue  # that model is not even loaded
        with models[side]() as answer:
            for arm, arm_side, kind in ARMS:
                if arm_side != side or arm not in cfg.ladder_arms:
                    continue
                t0 = time.perf_counter()
                got = answer(arm_prompts(run, kind, examples, shots, retrieved), arm)
                seconds = time.perf_counter() - t0
                preds = [a for a, _, _ in got]
                metrics, style = answer_metrics(run, preds, refs, [n for _, n, _ in got], cfg,
                                                [ex.prompt for ex in examples])
                metrics.update({"prompt_tokens": sum(p for _, _, p in got) / len(got),
                                "seconds": round(seconds, 3), "value_rate": value_rate(preds, refs)})
                arms[arm] = {"metrics": metrics, "answers": preds, "style": style}
                if arm in RAG_ARMS and cases:
                    got = answer(cf_prompts, f"{arm} counterfactual")
                    cf_answers = [a for a, _, _ in got]
                    # read as the arm's answers are, the changed passages a source of right values too
                    review = review_answers(run.dataset, cf_answers, references=[refs[c.index] for c in cases],
                                            prompts=[examples[c.index].prompt for c in cases],
                                            new_tokens=[n for _, n, _ in got], max_new_tokens=cfg.max_new_tokens,
                                            contexts=["\n".join(r) for r in cf_retrieved])
                    faith[arm] = faithfulness_record(cases, cf_answers, [ex.prompt for ex in examples],
                                                     review["reasons"])
    return {"arms": arms, "faithfulness": faith,
            "retriever": {"model": retriever.description, "k": k, "passages": len(passages),
                          "retrieved_ids": [[h.passage.id for h in hs] for hs in hits]},
            "few_shot": cfg.few_shot}


def ladder_entries(arms: dict[str, dict[str, Any]], faith: dict[str, Any]) -> list[dict[str, Any]]:
    """eval.json's ``ladder``: one entry per arm."""
    out = []
    for arm, _, kind in ARMS:
        if arm not in arms:
            continue
        m = arms[arm]["metrics"]
        out.append({"arm": arm, "prompt": kind, "usable_rate": m["usable_rate"], "style_rate": m.get("style_rate"),
                    "forbidden_claims": m["forbidden_claims"], "rouge_l": m["rouge_l"], "value_rate": m["value_rate"],
                    "prompt_tokens": m["prompt_tokens"], "new_tokens": m["avg_new_tokens"],
                    "seconds": m["seconds"], "faithfulness": (faith.get(arm) or {}).get("rate")})
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}%"


def ladder_verdict(ladder: list[dict[str, Any]], starting_run: str | None = None) -> str:
    """The decision tree in words, from the numbers: prompt first, RAG for facts, fine-tune for style.

    ``starting_run``: the run this one started from (init.run). Its merged weights are then the "base" arms, so
    the verdict compares this run's training with that run's model, not with the untrained one."""
    a = {e["arm"]: e for e in ladder}
    if len(a) < len(ARMS):
        return (f"Partial ladder ({', '.join(a)}): no verdict; the decision tree compares all five arms "
                "(eval.ladder_arms).")
    base, fs, ft, ftr, br = (a[x] for x in ("base", "base+few-shot", "finetuned", "finetuned+rag", "base+rag"))
    out = []
    if starting_run:
        out.append(f"The base arms are the run this one started from ({starting_run}, init.run), not the untrained "
                   "model: the verdict weighs this run's training against that run.")
    free = "without this run's training" if starting_run else "at no training cost"
    best = max(ladder, key=lambda e: (e["usable_rate"], e["rouge_l"]))
    if best["usable_rate"] < 50:
        out.append(f"No arm gives usable answers on most questions (best: {best['arm']}, "
                   f"{_pct(best['usable_rate'])} usable).")
    if ft["usable_rate"] == 0 and fs["usable_rate"] == 0:
        out.append("Neither few-shot prompting nor fine-tuning gives a usable answer.")
    elif fs["usable_rate"] >= ft["usable_rate"]:
        out.append(f"Few-shot prompting matches the fine-tuned model ({_pct(fs['usable_rate'])} vs "
                   f"{_pct(ft['usable_rate'])} usable) {free}, for {fs['prompt_tokens']:.0f} prompt "
                   f"tokens an answer instead of {ft['prompt_tokens']:.0f}: prompt first; fine-tuning does not pay "
                   "here.")
    else:
        out.append(f"Few-shot prompting reaches {100 * fs['usable_rate'] / ft['usable_rate']:.0f}% of the fine-tuned "
                   f"model's usable rate ({_pct(fs['usable_rate'])} vs {_pct(ft['usable_rate'])}) {free} "
                   f"(base zero-shot: {_pct(base['usable_rate'])}).")
    vals = [e for e in ladder if e["value_rate"] is not None]
    if vals:
        top = max(e["value_rate"] for e in vals)
        leaders = [e["arm"] for e in vals if e["value_rate"] == top]
        if top == 0:
            out.append("No arm states a right checkable value (price, distance, hour).")
        elif len(leaders) == 1:
            out.append(f"{leaders[0]} states right checkable values most often ({_pct(top)} of its answers with a "
                       "price, distance or hour carry the right one).")
        else:
            out.append(f"{', '.join(leaders)} carry the most right checkable values ({_pct(top)}).")
    f_ft, f_b = ftr["faithfulness"], br["faithfulness"]
    if f_ft is not None and f_b is not None:
        if f_ft >= TARGET_FAITHFUL and ftr["usable_rate"] >= TARGET_USABLE:
            out.append(f"Fine-tuned + RAG follows the retrieved value ({_pct(f_ft)} of counterfactual answers) and "
                       f"is {_pct(ftr['usable_rate'])} usable: fine-tune for style, retrieve the facts.")
        elif f_ft < f_b:
            out.append(f"Fine-tuning made the model ignore its context: {_pct(f_ft)} of its counterfactual answers "
                       f"carry the retrieved value against {_pct(f_b)} for base + RAG; train with retrieved "
                       "passages in the prompt (RAFT-style) before relying on RAG.")
        else:
            out.append(f"Fine-tuned + RAG carries the retrieved value in {_pct(f_ft)} of counterfactual answers "
                       f"(base + RAG {_pct(f_b)}) and is {_pct(ftr['usable_rate'])} usable; the targets are "
                       f"{TARGET_FAITHFUL:.0f}% and {TARGET_USABLE:.0f}%.")
    return " ".join(out)


@dataclass(frozen=True)
class LocalEngine:
    """tuneforge eval's own functions (tuneforge.evaluation.runner), passed in: ``generate(model, tokenizer,
    examples, cfg, seq_len, seed, desc)``, ``prompt_text(tokenizer, messages)``, ``models(art)`` (yields the
    base and fine-tuned contexts)."""

    generate: Callable[..., list[tuple[str, int]]]
    prompt_text: Callable[[Any, list[dict]], str]
    models: Callable[[Any], AbstractContextManager[tuple[str, Any, str, Any]]]


def local_answerer(model: Any, tokenizer: Any, cfg: EvalConfig, seed: int, engine: LocalEngine) -> Answerer:
    """Batched greedy/sampled generation with the eval's settings; prompt tokens counted with the chat template."""
    from tuneforge.evaluation.examples import EvalExample

    generate_answers, prompt_text = engine.generate, engine.prompt_text

    def answer(prompts: list[list[dict]], desc: str) -> list[tuple[str, int, int]]:
        n_prompt = [len(tokenizer(prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"]) for p in prompts]
        exs = [EvalExample([*p, {"role": "assistant", "content": ""}], "") for p in prompts]
        # no truncation of the longer few-shot / RAG prompts: the window is what the longest prompt needs
        got = generate_answers(model, tokenizer, exs, cfg, max(n_prompt) + cfg.max_new_tokens + 8, seed, desc)
        return [(a, n, p) for (a, n), p in zip(got, n_prompt)]

    return answer


@contextmanager
def local_models(art: Any, tokenizer: Any, cfg: EvalConfig, engine: LocalEngine) -> Iterator[dict[str, Any]]:
    """{side: context manager factory yielding its answerer}, loading the models as ``tuneforge eval`` does."""
    with engine.models(art) as (base_desc, base_ctx, tuned_desc, tuned_ctx):
        def factory(ctx: Any) -> Any:
            @contextmanager
            def make() -> Iterator[Answerer]:
                with ctx() as model:
                    model.eval()
                    yield local_answerer(model, tokenizer, cfg, art.run.hparams.seed, engine)
            return make
        yield {"base": factory(base_ctx), "finetuned": factory(tuned_ctx),
               "_desc": (base_desc, tuned_desc)}
