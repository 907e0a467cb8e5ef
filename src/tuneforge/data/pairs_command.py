"""``tuneforge data pairs``: build preference pairs from an SFT dataset (and optionally a model's answers).

    tuneforge data pairs [dataset=dalat-tourism] [run=<sft run dir>|latest] [samples=2] [per_answer=3]
                         [out=data/dalat/pairs.jsonl] [heldout=data/dalat/pairs-heldout.jsonl]

Chosen is always the dataset's reference answer. Without ``run``: rejected answers are edits of it, each
breaking one check (tuneforge.data.pair_builder). With ``run``: that run's model answers each train question
``samples`` times (sampling at eval.temperature) and the answer failing the most checks (fact guard, style,
degeneration: tuneforge.evaluation.answer_checks) is the rejected side; the edit pairs are added, so pairs
with a forbidden claim on the rejected side are always there. Pairs come from the train split only; the
held-out file from the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KEYS = ("dataset", "run", "samples", "per_answer", "out", "heldout", "seed")


def cmd_pairs(args: list[str]) -> int:
    from tuneforge.data import pair_builder as pb
    from tuneforge.errors import DataError

    opts = dict(a.split("=", 1) for a in args if "=" in a)
    bad = [a for a in args if "=" not in a] + [k for k in opts if k not in KEYS]
    if bad:
        raise DataError(f"tuneforge data pairs: unknown argument {bad[0]!r}; valid keys: {', '.join(KEYS)}")
    from tuneforge.config.compose import load_run_config
    from tuneforge.data.prepare import prepare_splits

    sft = load_run_config([f"dataset={opts.get('dataset', 'dalat-tourism')}"], command="data")
    data = prepare_splits(sft.dataset)
    train, test = pb.reference_examples(Path(data.train)), pb.reference_examples(Path(data.test))
    per_answer, seed = int(opts.get("per_answer", 3)), int(opts.get("seed", 0))
    pairs = list(pb.edit_pairs(train, per_answer=per_answer, seed=seed))
    if "run" in opts:
        samples = sample_answers(opts["run"], train, int(opts.get("samples", 2)), seed)
        reasons = answer_reasons(sft.dataset)
        pairs = list(pb.sampled_pairs(train, samples, reasons)) + pairs
    out = Path(opts.get("out", "data/dalat/pairs.jsonl"))
    n = pb.write_pairs(out, pairs)
    n_held = pb.write_pairs(Path(opts.get("heldout", "data/dalat/pairs-heldout.jsonl")),
                            pb.edit_pairs(test, per_answer=2, seed=seed + 1))
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    print(f"{out}: {n} pairs from {len(train)} train answers ({', '.join(f'{k} {v}' for k, v in kinds.items())}); "
          f"held-out: {n_held} pairs from {len(test)} test answers")
    return 0


def answer_reasons(ds: Any) -> Any:
    from tuneforge.data.lint import FactGuard
    from tuneforge.evaluation.answer_checks import review_answer, topic_check

    guard, topic = FactGuard(ds.forbidden_claims, ds.negation), topic_check(ds)

    def reasons(answer: str, question: str, reference: str) -> list[str]:
        return review_answer(ds, guard, answer, reference=reference, prompt=question, new_tokens=None,
                             max_new_tokens=None, topic=topic)

    return reasons


def sample_answers(run_ref: str, examples: list[dict[str, Any]], n: int, seed: int) -> dict[str, list[str]]:
    """``n`` sampled answers of the run's model to the first question of every example."""
    import dataclasses

    from tuneforge.evaluation.artifacts import load_finetuned, load_run_tokenizer, open_run
    from tuneforge.evaluation.examples import EvalExample
    from tuneforge.evaluation.runner import generate_answers
    from tuneforge.runs import resolve_run

    art = open_run(resolve_run(run_ref))
    model, _ = load_finetuned(art)
    tokenizer = load_run_tokenizer(art)
    cfg = dataclasses.replace(art.run.eval, do_sample=True)
    asked = [EvalExample([*([{"role": "system", "content": ex["system"]}] if ex["system"] else []),
                          {"role": "user", "content": ex["questions"][0]},
                          {"role": "assistant", "content": ex["answer"]}], ex["answer"]) for ex in examples]
    out: dict[str, list[str]] = {}
    for k in range(n):
        answers = generate_answers(model, tokenizer, asked, cfg, art.run.hparams.seq_len, seed + k, f"sample {k + 1}")
        for ex, (text, _) in zip(examples, answers):
            out.setdefault(ex["questions"][0], []).append(text)
    return out
