"""``tuneforge data``: prepare a dataset (lint, augment, split, stats, cost) or lint any file.

    tuneforge data prepare dataset=dalat-tourism [recipe=lora-tiny] [key=value ...] [--out DIR] [--force]
    tuneforge data lint path/to/file.jsonl [--format chat|alpaca|completion|sharegpt|csv_qa] [key=value ...]
    tuneforge data rules
    tuneforge data show [recipe=...] [key=value ...] [--n 3] [--split train] [--color auto|always|never]
    tuneforge data pairs [dataset=dalat-tourism] [run=<sft run>] [samples=2] [out=...]   (preference pairs)

``key=value`` pairs are Hydra overrides: the run config is composed as for ``train``, so token counts use
the run's tokenizer and seq_len. Exit status: 0 clean, 1 warnings only, 2 errors (or unreadable input).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError
from tuneforge.schema.dataset import FORMAT_NAMES, DatasetConfig

EPILOG = """exit status: 0 clean (no findings), 1 warnings only, 2 errors (rows rejected, dataset unusable,
or input unreadable). Rules: `tuneforge data rules`."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tuneforge data", description="prepare or lint fine-tuning data",
                                epilog=EPILOG)
    sub = p.add_subparsers(dest="action", required=True, metavar="{prepare,lint,rules,show,passages,pairs,distill}")
    pp = sub.add_parser("prepare", help="lint + augment + split + stats + cost of dataset=NAME (cached)",
                        epilog=EPILOG)
    pp.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=dalat-tourism recipe=lora-tiny")
    pp.add_argument("--out", type=Path, help="also copy the splits, quarantine and report.json here")
    pp.add_argument("--force", action="store_true", help="rebuild even if the cache has it")
    pp.add_argument("--no-tokens", action="store_true", help="skip token counting (no tokenizer load)")
    pl = sub.add_parser("lint", help="report problems in any data file; changes nothing", epilog=EPILOG)
    pl.add_argument("path", type=Path)
    pl.add_argument("overrides", nargs="*", help="Hydra overrides; dataset=NAME applies its lint settings")
    pl.add_argument("--format", choices=FORMAT_NAMES, help="default: from the extension / first record")
    pl.add_argument("--quarantine", type=Path, help="write rejected rows (with reasons) to this JSONL file")
    pl.add_argument("--report", type=Path, help="write report.json here")
    pl.add_argument("--max-tokens", type=int, help="token limit (default: dataset.lint.max_tokens or seq_len)")
    pl.add_argument("--no-tokens", action="store_true", help="skip token counting (no tokenizer load)")
    sub.add_parser("rules", help="list the lint rules")
    pd = sub.add_parser("distill", help="answer a dataset's prompts with an OpenAI-compatible model -> chat JSONL")
    pd.add_argument("options", nargs="*", help="endpoint=URL model=NAME [dataset=NAME split=train max_examples=N ...]")
    pd.add_argument("--yes", action="store_true", help="go on when the estimate is above max_cost_usd")
    ps = sub.add_parser("show", help="N examples through the chat template, trained tokens marked")
    ps.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. recipe=qlora-tiny dataset=sample-chat")
    ps.add_argument("--n", type=int, default=3, help="how many examples (default 3)")
    ps.add_argument("--split", choices=("train", "val", "test"), default="train")
    ps.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                    help="auto: colour on a terminal, [[brackets]] when piped")
    pk = sub.add_parser("passages", help="lint the knowledge base (dataset.passages): empty, duplicate, forbidden "
                        "passages; held-out answers no passage supports", epilog=EPILOG)
    pk.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=dalat-tourism")
    return p


def _overrides(values: list[str]) -> list[str]:
    bad = [v for v in values if "=" not in v]
    if bad:
        raise DataError(f"expected key=value overrides, got {bad[0]!r} (e.g. dataset=dalat-tourism)")
    return values


def cmd_data(args: list[str]) -> int:
    if args[:1] == ["pairs"]:  # preference pairs from an SFT dataset (cmd_pairs below)
        return cmd_pairs(args[1:])
    parser = _parser()
    ns, rest = parser.parse_known_args(args)  # key=value after an --option is still an override
    if rest and (any(r.startswith("-") for r in rest) or not hasattr(ns, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        ns.overrides = [*ns.overrides, *rest]
    if ns.action == "rules":
        from tuneforge.data.report import rules_table

        print(rules_table())
        return 0
    if ns.action == "prepare":
        return _prepare(ns)
    if ns.action == "passages":
        from tuneforge.config.compose import load_run_config
        from tuneforge.data.passages import load_passages
        from tuneforge.data.passages_lint import lint_knowledge_base, lint_summary

        ds = load_run_config(_overrides(ns.overrides), command="data passages").dataset
        problems, support = lint_knowledge_base(ds)
        print(lint_summary(problems, support, len(load_passages(ds))))
        return 2 if problems else 0
    if ns.action == "distill":
        from tuneforge.distill import cmd_distill

        return cmd_distill([*ns.options, *(["--yes"] if ns.yes else [])])
    if ns.action == "show":
        from tuneforge.config.compose import load_run_config
        from tuneforge.data.show import show_examples, use_color

        if ns.n < 1:
            raise DataError("--n must be >= 1")
        from tuneforge.backends.registry import get_backend

        run = load_run_config(_overrides(ns.overrides), command="data show")
        assistant_only = get_backend(run.backend.name).loss_mask(run) == "assistant-only"
        print(show_examples(run, n=ns.n, split=ns.split, color=use_color(ns.color), assistant_only=assistant_only),
              end="")
        return 0
    return _lint(ns)


def _prepare(ns: argparse.Namespace) -> int:
    from tuneforge.config.compose import load_run_config
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.data.report import render_summary

    run = load_run_config(_overrides(ns.overrides), command="data prepare")
    count_tokens = not ns.no_tokens
    if count_tokens and run.model.tiny is None:
        from tuneforge.errors import ModelLoadError
        from tuneforge.models import load_tokenizer

        try:
            load_tokenizer(run)
        except ModelLoadError as exc:  # e.g. a gated tokenizer offline: the data is still prepared
            print(f"note: no token counts: {str(exc).splitlines()[0]}\n  (preparing without them; "
                  "`tuneforge plan` estimates tokens from characters)")
            count_tokens = False
    try:
        prep = prepare_splits(run.dataset, run=run, count_tokens=count_tokens, force=ns.force)
        report, report_path = prep.report, prep.report_path
    except DataError:
        from tuneforge.data.prepare import prepared_dir, tokens_key

        # unusable dataset: show the summary that says why, then fail
        d = prepared_dir(run.dataset)
        report_path = d / (f"report-tokens-{tokens_key(run)}.json" if count_tokens else "report.json")
        if not report_path.is_file():
            raise
        report = json.loads(report_path.read_text(encoding="utf-8"))
    print(render_summary(report))
    print(f"{'report:':<14}{report_path}")
    if ns.out is not None:
        ns.out.mkdir(parents=True, exist_ok=True)
        for p in report["files"].values():
            if Path(p).is_file():
                shutil.copyfile(p, ns.out / Path(p).name)
        shutil.copyfile(report_path, ns.out / "report.json")
        print(f"{'copied to:':<14}{ns.out}")
    return int(report["exit_status"])


def _lint_target(path: Path, overrides: list[str]) -> tuple[Path, list[str]]:
    """The file to lint: the positional one, or ``dataset.path=FILE`` given in its place."""
    if "=" in str(path) and not path.exists():
        overrides = [str(path), *overrides]
        given = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "dataset.path"]
        if not given:
            raise DataError(f"data lint needs a file first: tuneforge data lint FILE [key=value ...] "
                            f"(or dataset.path=FILE); got {path}")
        path = Path(given[-1])
    return path, overrides


def _file_dataset(path: Path, fmt: str, overrides: list[str]) -> DatasetConfig:
    """A dataset config for one file, with the command line's ``dataset.*`` settings applied and type-checked."""
    from omegaconf import OmegaConf

    from tuneforge.errors import ConfigError

    ds = DatasetConfig(name=path.stem, path=str(path), format=fmt)
    dotlist = [o.lstrip("+~")[len("dataset."):] for o in overrides if o.lstrip("+~").startswith("dataset.")
               and not o.lstrip("+~").startswith("dataset.path=")]
    if not dotlist:
        return ds
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ds), OmegaConf.from_dotlist(dotlist))
        out = OmegaConf.to_object(merged)
    except Exception as exc:
        raise ConfigError(f"data lint: {str(exc).splitlines()[0]} (in {', '.join('dataset.' + d for d in dotlist)})"
                          ) from None
    assert isinstance(out, DatasetConfig)
    if out.format not in FORMAT_NAMES:
        raise ConfigError(f"dataset.format={out.format!r} is not a format; choose one of: {', '.join(FORMAT_NAMES)}")
    return out


def _lint(ns: argparse.Namespace) -> int:
    from tuneforge.data.formats import guess_format
    from tuneforge.data.pipeline import TokenOptions, run_pipeline
    from tuneforge.data.report import build_report, render_summary

    path, overrides = _lint_target(ns.path, _overrides(ns.overrides))
    from tuneforge.data.source_file import source_file_problem

    if (problem := source_file_problem(path)) is not None:
        raise DataError(f"{path}: {problem}")
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    explicit_dataset = "dataset" in keys
    run = None
    if explicit_dataset or not ns.no_tokens:
        from tuneforge.config.compose import load_run_config

        run = load_run_config(overrides, command="data lint")
    if explicit_dataset and run is not None:  # a named dataset: its settings (with any dataset.* overrides)
        ds = dataclasses.replace(run.dataset, path=str(path))
        fmt = ns.format or ds.format
    else:  # this file alone, with the dataset.* settings given on the command line
        ds = _file_dataset(path, ns.format or guess_format(path), overrides)
        fmt = ns.format or ds.format
    tokens = None
    if not ns.no_tokens and run is not None:
        from tuneforge.data.tokens import TokenCounter, auto_processes
        from tuneforge.models import load_tokenizer

        limit = ns.max_tokens or ds.lint.max_tokens or run.hparams.seq_len
        counter = TokenCounter(load_tokenizer(run), name=run.model.name_or_path,
                               processes=auto_processes(path.stat().st_size))
        tokens = TokenOptions(counter, max_tokens=limit, seq_len=run.hparams.seq_len,
                              micro_batch_size=run.hparams.micro_batch_size)
    try:
        result = run_pipeline(ds, path, None, fmt=fmt, tokens=tokens, augment=False, quarantine=ns.quarantine)
    finally:
        if tokens is not None:
            tokens.counter.close()
    report = build_report(ds, path, result, None, run=run, with_tokens=True, fmt=fmt)
    print(render_summary(report))
    if ns.report is not None:
        ns.report.parent.mkdir(parents=True, exist_ok=True)
        ns.report.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"{'report:':<14}{ns.report}")
    return int(report["exit_status"])


# --- tuneforge data pairs ---------------------------------------------------------------------------------
# Chosen is always the dataset's reference answer. Without run=: rejected answers are edits of it, each breaking
# one check (tuneforge.data.pair_builder). With run=<sft run>: that run's model answers each train question
# `samples` times (sampling at its eval.temperature) and the answer failing the most checks (fact guard, style,
# degeneration) is the rejected side; the edit pairs are added, so pairs with a forbidden claim on the rejected
# side are always there. Pairs come from the train split only; the held-out file from the test split.

PAIRS_KEYS = ("dataset", "run", "samples", "per_answer", "out", "heldout", "seed")


def cmd_pairs(args: list[str]) -> int:
    from tuneforge.data import pair_builder as pb
    from tuneforge.errors import DataError

    opts = dict(a.split("=", 1) for a in args if "=" in a)
    bad = [a for a in args if "=" not in a] + [k for k in opts if k not in PAIRS_KEYS]
    if bad:
        raise DataError(f"tuneforge data pairs: unknown argument {bad[0]!r}; valid keys: {', '.join(PAIRS_KEYS)}")
    from tuneforge.config.compose import load_run_config
    from tuneforge.data.prepare import prepare_splits

    sft = load_run_config([f"dataset={opts.get('dataset', 'dalat-tourism')}"], command="data")
    data = prepare_splits(sft.dataset)
    train, test = pb.reference_examples(Path(data.train)), pb.reference_examples(Path(data.test))
    from tuneforge.data.lint import FactGuard

    per_answer, seed = int(opts.get("per_answer", 3)), int(opts.get("seed", 0))
    states_claim = FactGuard(sft.dataset.forbidden_claims, sft.dataset.negation).find
    pairs = list(pb.edit_pairs(train, per_answer=per_answer, seed=seed, states_claim=states_claim))
    if "run" in opts:
        samples = _sample_answers(opts["run"], train, int(opts.get("samples", 2)), seed)
        reasons = _answer_reasons(sft.dataset)
        pairs = list(pb.sampled_pairs(train, samples, reasons)) + pairs
    out = Path(opts.get("out", "data/dalat/pairs.jsonl"))
    n = pb.write_pairs(out, pairs)
    n_held = pb.write_pairs(Path(opts.get("heldout", "data/dalat/pairs-heldout.jsonl")),
                            pb.edit_pairs(test, per_answer=2, seed=seed + 1, states_claim=states_claim))
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    print(f"{out}: {n} pairs from {len(train)} train answers ({', '.join(f'{k} {v}' for k, v in kinds.items())}); "
          f"held-out: {n_held} pairs from {len(test)} test answers")
    return 0


def _answer_reasons(ds: Any) -> Any:
    from tuneforge.data.answer_review import review_answer
    from tuneforge.data.lint import FactGuard
    from tuneforge.evaluation.answer_checks import lexicon, topic_check

    guard, topic, words = FactGuard(ds.forbidden_claims, ds.negation), topic_check(ds), lexicon(ds)

    def reasons(answer: str, question: str, reference: str) -> list[str]:
        return review_answer(ds, guard, answer, reference=reference, prompt=question, new_tokens=None,
                             max_new_tokens=None, topic=topic, lexicon=words)

    return reasons


def _sample_answers(run_ref: str, examples: list[dict[str, Any]], n: int, seed: int) -> dict[str, list[str]]:
    """``n`` sampled answers of the run's model to the first question of every example."""
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
