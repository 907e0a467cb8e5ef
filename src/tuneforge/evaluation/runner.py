"""``tuneforge eval run=<run_dir>``: base vs fine-tuned on the run's held-out test split -> eval.json, report.

Both models see the same prompts (the conversation up to its last assistant turn, chat template applied)
with the same decoding settings and seed. Loss is the mean cross-entropy over assistant tokens only (the
tokens the run trained on), so it is comparable with the training loss; perplexity is exp(loss).
Generation is batched with left padding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError
from tuneforge.evaluation.artifacts import RunArtifacts, load_base, load_full_model, load_run_tokenizer
from tuneforge.evaluation.examples import EvalExample, assistant_token_mask, load_test_examples, stop_token_ids
from tuneforge.evaluation.metrics import perplexity
from tuneforge.schema.evaluation import EvalConfig
from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)

# the loss pass holds batch x length x vocabulary logits (fp32): 8 x 300 x 262k is 2.5 GB for Gemma 3
LOSS_BATCH = 8


def assistant_loss(model: Any, tokenizer: Any, examples: list[EvalExample], cfg: EvalConfig, seq_len: int,
                   desc: str) -> tuple[float, int]:
    """Token-weighted mean cross-entropy over the assistant tokens of every example, and the token count."""
    import torch
    from tqdm.auto import tqdm

    encoded = [assistant_token_mask(tokenizer, ex.messages) for ex in examples]
    encoded = [(ids[:seq_len], mask[:seq_len]) for ids, mask in encoded]
    pad = tokenizer.pad_token_id
    total, count = 0.0, 0
    dev = next(model.parameters()).device
    size = min(cfg.batch_size, LOSS_BATCH)
    batches = range(0, len(encoded), size)
    for start in tqdm(batches, desc=f"{desc}: loss", unit="batch", leave=False):
        batch = encoded[start:start + size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch], device=dev)
        attn = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=dev)
        mask = torch.tensor([m + [0] * (width - len(m)) for _, m in batch], device=dev)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attn).logits.float()
        # position t predicts token t+1; count a target only where it is an assistant token
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                ids[:, 1:].reshape(-1), reduction="none")
        target = mask[:, 1:].reshape(-1).bool()
        total += float(nll[target].sum())
        count += int(target.sum())
    if count == 0:
        raise DataError("no assistant tokens in the test split after truncation to hparams.seq_len")
    return total / count, count


# --- generation -----------------------------------------------------------------------------------------

def generation_config(tokenizer: Any, cfg: EvalConfig) -> Any:
    from transformers import GenerationConfig

    if cfg.do_sample:
        sampling = {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p}
    else:  # None: drop the model's own sampling defaults, which greedy decoding would warn about
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return GenerationConfig(max_new_tokens=cfg.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=stop_token_ids(tokenizer), repetition_penalty=cfg.repetition_penalty,
                            no_repeat_ngram_size=cfg.no_repeat_ngram_size or None,
                            **sampling)


def prompt_text(tokenizer: Any, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate_answers(model: Any, tokenizer: Any, examples: list[EvalExample], cfg: EvalConfig, seq_len: int,
                     seed: int, desc: str) -> list[tuple[str, int]]:
    """(answer, number of new tokens) per example; batched, left-padded, same seed for every model."""
    import torch
    from tqdm.auto import tqdm

    gen = generation_config(tokenizer, cfg)
    stops = set(stop_token_ids(tokenizer)) | {tokenizer.pad_token_id}
    side, trunc = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"  # prompts end where the answer starts
    dev = next(model.parameters()).device
    out: list[tuple[str, int]] = []
    torch.manual_seed(seed)
    try:
        for start in tqdm(range(0, len(examples), cfg.batch_size), desc=f"{desc}: generate", unit="batch",
                          leave=False):
            batch = examples[start:start + cfg.batch_size]
            texts = [prompt_text(tokenizer, ex.prompt_messages) for ex in batch]
            enc = tokenizer(texts, add_special_tokens=False, padding=True, truncation=True,
                            max_length=max(8, seq_len - cfg.max_new_tokens), return_tensors="pt").to(dev)
            with torch.no_grad():
                seqs = model.generate(**enc, generation_config=gen)
            for row in seqs[:, enc["input_ids"].shape[1]:].tolist():
                n = next((i for i, t in enumerate(row) if t in stops), len(row))
                text = tokenizer.decode(row[:n], skip_special_tokens=True, clean_up_tokenization_spaces=False)
                out.append((text.strip(), n))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, trunc
    return out


def warn_if_references_cut(tokenizer: Any, examples: list[EvalExample], max_new_tokens: int) -> int:
    """Warn when ``max_new_tokens`` is shorter than reference answers: those answers are cut before the
    reference ends, so ROUGE-L and chrF (recall against the whole reference) underrate both models. Returns
    the longest reference's length in tokens."""
    lengths = [len(tokenizer(ex.reference, add_special_tokens=False)["input_ids"]) for ex in examples]
    longest = max(lengths, default=0)
    over = sum(n > max_new_tokens for n in lengths)
    if over:
        log.warning("eval.max_new_tokens=%d is shorter than %d of the %d reference answers (the longest is %d "
                    "tokens): their answers are cut off, so ROUGE-L and chrF underrate both models; "
                    "eval.max_new_tokens=%d covers them all", max_new_tokens, over, len(lengths), longest,
                    longest + 8)
    return longest


# --- one model, then the pair ----------------------------------------------------------------------------

def score_model(model: Any, tokenizer: Any, examples: list[EvalExample], run: RunConfig, cfg: EvalConfig,
                desc: str, probes: list[Any] | None = None,
                ) -> tuple[dict[str, float], list[str], dict[str, Any] | None]:
    """(metrics, answers) of one model on the held-out examples, and its answers to the probes (reviewed).

    The probe questions are generated in the same batches as the test questions: on a CPU a decoding step
    reads the whole LM head (262k x 640 weights for Gemma 3) whatever the batch, so one batch of 61 prompts
    costs about what one of 16 does."""
    model.eval()
    t0 = time.perf_counter()
    loss, n_tokens = assistant_loss(model, tokenizer, examples, cfg, run.hparams.seq_len, desc)
    asked = examples + probe_examples(run, probes or [])
    answers = generate_answers(model, tokenizer, asked, cfg, run.hparams.seq_len, run.hparams.seed, desc)
    answers, probe_answers = answers[:len(examples)], answers[len(examples):]
    preds = [a for a, _ in answers]
    from tuneforge.evaluation.results import answer_metrics

    metrics, style = answer_metrics(run, preds, [ex.reference for ex in examples], [n for _, n in answers], cfg,
                                    [ex.prompt for ex in examples])
    metrics = {**metrics, "loss": loss, "perplexity": perplexity(loss),
               "loss_tokens": n_tokens, "seconds": round(time.perf_counter() - t0, 3), "_style": style}
    return metrics, preds, review_probes(run, cfg, probes, probe_answers) if probes else None


def probe_examples(run: RunConfig, probes: list[Any]) -> list[EvalExample]:
    """Each probe as a conversation (the dataset's system prompt, the question) with no reference answer."""
    system = [{"role": "system", "content": run.dataset.system_prompt}] if run.dataset.system_prompt else []
    return [EvalExample([*system, {"role": "user", "content": p.question}, {"role": "assistant", "content": ""}],
                        "", p.category) for p in probes]


def review_probes(run: RunConfig, cfg: EvalConfig, probes: list[Any], answers: list[tuple[str, int]]) -> dict[str, Any]:
    """One side's answers to the probe questions, each reviewed (usable, or why not)."""
    from tuneforge.evaluation.answer_checks import review_answers

    review = review_answers(run.dataset, [a for a, _ in answers], references=[None] * len(probes),
                            prompts=[p.question for p in probes], new_tokens=[n for _, n in answers],
                            max_new_tokens=cfg.max_new_tokens,
                            required=[(p.required, p.required_message) for p in probes])
    return {"answers": [a for a, _ in answers], "review": review}


def trap_answered_right(reasons: list[str]) -> bool:
    """A trap is answered right when the answer states the right fact *and* claims nothing forbidden: "Đà Lạt
    không có biển ạ. Để tắm biển, anh/chị có thể chọn: Thác Datanla" states the fact and then takes it back, and
    a reader counts it wrong. (Other flaws, a loop or a broken word, make it unusable, not wrong on the fact.)"""
    return not any(r.startswith(("misses the right fact", "forbidden claim")) for r in reasons)


def probe_results(probes: list[Any], sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """eval.json's ``probes``: per side the usable rate, traps answered right, forbidden claims; the samples."""
    out: dict[str, Any] = {"n": len(probes), "n_traps": sum(p.trap for p in probes)}
    for side, rec in sides.items():
        rv = rec["review"]
        traps = [i for i, p in enumerate(probes) if p.trap]
        out[side] = {"usable_rate": rv["usable_rate"], "n_usable": rv["n_usable"],
                     "traps_right": sum(trap_answered_right(rv["reasons"][i]) for i in traps),
                     "forbidden_claims": sum(r.startswith("forbidden claim") for rs in rv["reasons"] for r in rs),
                     "reason_counts": rv["reason_counts"]}
    out["samples"] = [{"question": p.question, "category": p.category, "trap": p.trap,
                       "required_message": p.required_message,
                       **{side: sides[side]["answers"][i] for side in sides},
                       **{f"{side}_reasons": sides[side]["review"]["reasons"][i] for side in sides}}
                      for i, p in enumerate(probes)]
    return out


@contextmanager
def _models(art: RunArtifacts) -> Iterator[tuple[str, Any, str, Any]]:
    """Yields (base description, base context, fine-tuned description, fine-tuned loader).

    An adapter run loads the base once: the base side runs under ``disable_adapter()``."""
    # a run started from another run (init.run) has that run's merged weights as its base: say so, so neither
    # the report nor the ladder's verdict reads them as the untrained model
    base_name = (f"{art.run.model.name_or_path} + {starting_run_label(art.run.init.run)} (init.run, merged)"
                 if art.run.init.run is not None else art.run.model.name_or_path)
    if art.uses_adapter:
        from tuneforge.evaluation.artifacts import attach_adapter

        model = attach_adapter(art, load_base(art))
        quant = f" ({art.run.method.quantization.bits}-bit, as trained)" if art.is_qlora else ""
        yield (f"{base_name}{quant}", lambda: _disabled(model),
               f"{base_name}{quant} + adapter/", lambda: nullcontext(model))
    else:
        yield (base_name, lambda: _owned(lambda: load_base(art)),
               f"full fine-tune {art.weights.name}/",
               lambda: _owned(lambda: load_full_model(art.weights, art.run)))


def starting_run_label(run_dir: str) -> str:
    """``<recipe>/<timestamp>`` of the run a run started from."""
    p = Path(run_dir)
    return f"{p.parent.name}/{p.name}"


@contextmanager
def _disabled(model: Any) -> Iterator[Any]:
    with model.disable_adapter():
        yield model


@contextmanager
def _owned(load: Any) -> Iterator[Any]:
    """Load, use, and free before the next model loads (two full models need not fit at once)."""
    import gc

    model = load()
    try:
        yield model
    finally:
        del model
        gc.collect()


def evaluate_run(run_dir: Path, *, eval_config: EvalConfig | None = None, base: str | None = None,
                 quiet: bool = False, write_report: bool = True) -> dict[str, Any]:
    """Evaluate ``run_dir`` (its config.yaml; ``eval_config`` overrides the run's ``eval``, ``base`` its base
    model) and write eval.json, then report.md / report.html. Returns what eval.json holds."""
    from tuneforge.evaluation.artifacts import open_run
    from tuneforge.evaluation.hosted import evaluate_hosted_run, hosted_run

    if hosted_run(run_dir):
        return evaluate_hosted_run(run_dir, eval_config=eval_config, quiet=quiet, write_report=write_report)
    t0 = time.perf_counter()
    art = open_run(run_dir, base)
    from tuneforge.backends.registry import get_backend

    if get_backend(art.run.backend.name).task == "embedding":  # retrieval metrics, not generation
        from tuneforge.evaluation.retrieval import evaluate_retrieval

        return evaluate_retrieval(art, quiet=quiet, write_report=write_report)
    run, cfg = art.run, eval_config or art.run.eval
    if cfg.ladder:  # base zero-shot / few-shot / RAG vs fine-tuned / + RAG (tuneforge.evaluation.ladder)
        from tuneforge.evaluation.ladder_run import LocalEngine, evaluate_local_ladder

        return evaluate_local_ladder(art, cfg, LocalEngine(generate_answers, prompt_text, _models), quiet=quiet,
                                     write_report=write_report)
    tokenizer = load_run_tokenizer(art)
    from tuneforge.evaluation.preference_eval import generation_run, preference_results

    gen = generation_run(run)  # a preference run started from an SFT run answers the SFT run's questions
    examples = load_test_examples(gen, cfg.max_samples, cfg.split)
    log.info("evaluating %s on %d test examples (base vs fine-tuned)", art.run_dir, len(examples))
    longest_reference = warn_if_references_cut(tokenizer, examples, cfg.max_new_tokens)
    from tuneforge.data.probes import load_probes

    probes = load_probes(gen.dataset) if cfg.probes and cfg.split == "test" else []
    preference: dict[str, Any] = {}
    sides: dict[str, dict[str, float]] = {}
    answers: dict[str, list[str]] = {}
    probe_sides: dict[str, dict[str, Any]] = {}
    with _models(art) as (base_desc, base_ctx, tuned_desc, tuned_ctx):
        with base_ctx() as model:
            sides["base"], answers["base"], probe_sides["base"] = score_model(
                model, tokenizer, examples, gen, cfg, "base", probes)
        with tuned_ctx() as model:
            sides["finetuned"], answers["finetuned"], probe_sides["finetuned"] = score_model(
                model, tokenizer, examples, gen, cfg, "fine-tuned", probes)
            if run.objective.is_preference:  # reward accuracy and margin on held-out pairs, both models
                preference = preference_results(art, model, tokenizer)
    style = {side: sides[side].pop("_style") for side in sides}
    from tuneforge.evaluation.results import ab_results, publish_results

    results = ab_results(run, art.run_dir, cfg, examples, sides=sides, answers=answers, style=style,
                         base_desc=base_desc, tuned_desc=tuned_desc, t0=t0)
    results["decoding"]["longest_reference_tokens"] = longest_reference
    if probes:
        results["probes"] = probe_results(probes, probe_sides)
    if preference:
        results["preference"] = preference
        results["reward_accuracy"] = preference["reward_accuracy"]  # eval.json's headline for a preference run
        results["reward_margin"] = preference["reward_margin"]
    publish_results(art.run_dir, results, write_report=write_report, quiet=quiet)
    if run.tracking.name != "none":
        from tuneforge.evaluation.metrics import METRICS
        from tuneforge.evaluation.report import metrics_table_markdown
        from tuneforge.tracking.trackers import EvalLog, close_trackers, log_eval_results

        log_eval_results(run, art.run_dir, EvalLog(results, tuple(m.key for m in METRICS),
                                                   metrics_table_markdown(results)))
        close_trackers(art.run_dir)  # eval results are the last thing a run logs
    return results


def cmd_eval(args: list[str]) -> int:
    """tuneforge eval run=<run_dir> [eval.max_samples=N eval.max_new_tokens=N eval.do_sample=true ...]"""
    from tuneforge.evaluation.artifacts import open_run
    from tuneforge.evaluation.run_args import eval_config_with, parse_run_args

    if any(a.startswith("endpoint=") for a in args):  # answers from an OpenAI-compatible server
        from tuneforge.evaluation.endpoint import cmd_eval_endpoint

        return cmd_eval_endpoint(args)
    parsed = parse_run_args("eval", args, {})
    from tuneforge.console import quiet_library_progress, verbose_requested

    if not verbose_requested():  # eval's own lines (loss, generate) only; no weight-loading bars
        quiet_library_progress()
    from tuneforge.evaluation.hosted import evaluate_hosted_run, hosted_run

    if hosted_run(parsed.run_dir):  # answers through chat completions; same metrics and report
        from tuneforge.rundir import read_config

        cfg = eval_config_with(read_config(parsed.run_dir).eval, parsed.eval_overrides)
        evaluate_hosted_run(parsed.run_dir, eval_config=cfg)
        return 0
    art = open_run(parsed.run_dir)
    evaluate_run(art.run_dir, eval_config=eval_config_with(art.run.eval, parsed.eval_overrides),
                 base=parsed.options.get("base"))
    return 0
