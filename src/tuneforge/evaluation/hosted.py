"""Eval and chat of a hosted (OpenAI) run: the same test split, metrics and report as a local run, with the
answers coming from chat completions of the base model and of the job's ``fine_tuned_model``.

The narrow seam: :func:`hosted_answers` produces the answers; everything after (generation_metrics,
eval.json, report.md/html) is the local path's. Loss and perplexity are *not applicable*: the API does not
score a given reference answer (its logprobs cover only the tokens it generates), so they are reported as
such and never estimated.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from tuneforge.errors import RunArtifactError
from tuneforge.schema.evaluation import EvalConfig

log = logging.getLogger(__name__)

NOT_APPLICABLE = ("not applicable for a hosted model: the API does not return the log-probabilities of a "
                  "reference answer")


def hosted_run(run_dir: Path | str) -> bool:
    """A run directory made by a hosted backend (it records its job in job.json)."""
    return (Path(run_dir).expanduser() / "job.json").is_file()


def hosted_models(run_dir: Path) -> tuple[Any, str, str]:
    """(run config, base model id, fine-tuned model id); refuses a job that has not succeeded."""
    from tuneforge.rundir import read_config

    job = json.loads((run_dir / "job.json").read_text(encoding="utf-8"))
    run = read_config(run_dir)
    tuned = job.get("fine_tuned_model")
    if job.get("status") != "succeeded" or not tuned:
        raise RunArtifactError(f"run={run_dir}: OpenAI job {job.get('job_id')} has status {job.get('status')!r}, "
                               "so there is no fine-tuned model yet; re-attach with `tuneforge train ... "
                               f"run_dir={run_dir}` to follow it to the end")
    return run, job.get("model") or run.model.name_or_path, tuned


def _request(model: str, messages: list[dict], cfg: EvalConfig, seed: int) -> dict[str, Any]:
    sampling = {"temperature": cfg.temperature, "top_p": cfg.top_p} if cfg.do_sample else {"temperature": 0}
    return {"model": model, "messages": messages, "max_completion_tokens": cfg.max_new_tokens, "seed": seed,
            **sampling}


def hosted_answers(client: Any, model: str, prompts: list[list[dict]], cfg: EvalConfig, seed: int,
                   desc: str) -> list[tuple[str, int]]:
    """(answer, completion tokens) per prompt, one chat completion each, same decoding for every model."""
    import openai
    from tqdm.auto import tqdm

    from tuneforge.openai_api import api_error

    out = []
    for messages in tqdm(prompts, desc=f"{desc}: chat completions", unit="prompt", leave=False,
                         disable=len(prompts) < 2):
        try:
            resp = client.chat.completions.create(**_request(model, messages, cfg, seed))
        except openai.OpenAIError as exc:
            raise api_error(exc, f"chat completion with {model}") from None
        text = (resp.choices[0].message.content or "").strip()
        out.append((text, answer_tokens(resp, text, cfg.max_new_tokens)))
    return out


def answer_tokens(resp: Any, text: str, max_new_tokens: int) -> int:
    n = resp.usage.completion_tokens if resp.usage else len(text.split())
    return answer_length(n, resp.choices[0].finish_reason, max_new_tokens)


def answer_length(completion_tokens: int, finish_reason: str | None, max_new_tokens: int) -> int:
    """The answer's length in tokens, as the eval's cut-off check reads it (cut off: >= max_new_tokens).
    ``completion_tokens`` counts the closing end-of-turn token too, so an answer that ended on its own at the
    last allowed token would read as cut off; the server's ``finish_reason`` says which it was."""
    if finish_reason == "stop":  # it ended on its own
        return min(completion_tokens, max_new_tokens - 1)
    if finish_reason == "length":
        return max(completion_tokens, max_new_tokens)
    return completion_tokens


def evaluate_hosted_run(run_dir: Path | str, *, eval_config: EvalConfig | None = None, quiet: bool = False,
                        write_report: bool = True) -> dict[str, Any]:
    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.evaluation.results import ab_results, answer_metrics, publish_results
    from tuneforge.openai_api import make_client

    t0 = time.perf_counter()
    run_dir = Path(run_dir).expanduser().resolve()
    run, base_model, tuned_model = hosted_models(run_dir)
    cfg = eval_config or run.eval
    if cfg.repetition_penalty != 1.0:
        from tuneforge.errors import ConfigError

        raise ConfigError(f"eval.repetition_penalty={cfg.repetition_penalty}: OpenAI's chat completions have no "
                          "repetition penalty (frequency_penalty is another rule); use eval.repetition_penalty=1.0")
    if cfg.no_repeat_ngram_size:
        from tuneforge.errors import ConfigError

        raise ConfigError(f"eval.no_repeat_ngram_size={cfg.no_repeat_ngram_size}: OpenAI's chat completions cannot "
                          "forbid repeated n-grams; use eval.no_repeat_ngram_size=0")
    if cfg.ladder:  # gpt-4o-mini zero-shot / few-shot / RAG vs the fine-tuned model / + RAG
        from tuneforge.evaluation.ladder_run import evaluate_hosted_ladder

        return evaluate_hosted_ladder(run_dir, cfg, (run, base_model, tuned_model), _request, quiet=quiet,
                                      write_report=write_report)
    examples = load_test_examples(run, cfg.max_samples, cfg.split)
    client = make_client(run.backend)
    log.info("evaluating %s on %d test examples (%s vs %s)", run_dir, len(examples), base_model, tuned_model)
    sides: dict[str, dict[str, float]] = {}
    answers: dict[str, list[str]] = {}
    style: dict[str, Any] = {}
    for side, model, desc in (("base", base_model, "base"), ("finetuned", tuned_model, "fine-tuned")):
        s0 = time.perf_counter()
        got = hosted_answers(client, model, [ex.prompt_messages for ex in examples], cfg, run.hparams.seed, desc)
        answers[side] = [a for a, _ in got]
        sides[side], style[side] = answer_metrics(run, answers[side], [ex.reference for ex in examples],
                                                  [n for _, n in got], cfg, [ex.prompt for ex in examples])
        sides[side]["seconds"] = round(time.perf_counter() - s0, 3)
    results = ab_results(run, run_dir, cfg, examples, sides=sides, answers=answers, style=style,
                         base_desc=f"{base_model} (OpenAI chat completions)",
                         tuned_desc=f"{tuned_model} (OpenAI chat completions)", t0=t0,
                         not_applicable={"loss": NOT_APPLICABLE, "perplexity": NOT_APPLICABLE})
    publish_results(run_dir, results, write_report=write_report, quiet=quiet,
                    notes=(f"test loss / perplexity: {NOT_APPLICABLE}",))
    return results


def hosted_chat(run_dir: Path | str, prompt: str | None, *, decoding: EvalConfig | None = None,
                system_prompt: str | None = None, passages: list[str] | None = None) -> int:
    """``tuneforge chat`` of a hosted run: one answer to ``prompt``, or an interactive loop without it.
    ``passages``: the ones retrieved into ``prompt`` (rag=true); the answer's values are checked against them."""
    import sys

    from tuneforge.openai_api import make_client

    run_dir = Path(run_dir).expanduser().resolve()
    run, _, tuned = hosted_models(run_dir)
    cfg = decoding or run.eval
    client = make_client(run.backend)
    system = system_prompt or run.dataset.system_prompt
    history: list[dict] = []

    def ask(user: str) -> str:
        head = [{"role": "system", "content": system}] if system else []
        (answer, _), = hosted_answers(client, tuned, [[*head, *history, {"role": "user", "content": user}]], cfg,
                                      run.hparams.seed, "chat")
        return answer

    if prompt is not None:
        print(f"[{tuned}]", file=sys.stderr)
        answer = ask(prompt)
        print(answer)
        if passages is not None:
            from tuneforge.evaluation.rag import value_check

            print(value_check(answer, passages), file=sys.stderr)
        return 0
    print(f"tuneforge chat: {tuned} (OpenAI)\n  /reset clears the history, /exit or Ctrl-D quits")
    while True:
        line = sys.stdin.readline()
        if not line or line.strip() in ("/exit", "/quit"):
            return 0
        user = line.strip()
        if user == "/reset":
            history.clear()
            continue
        if user:
            answer = ask(user)
            print(f"assistant> {answer}")
            history += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
