"""``tuneforge data``: prepare a dataset (lint, augment, split, stats, cost) or lint any file.

    tuneforge data prepare dataset=dalat-tourism [recipe=lora-tiny] [key=value ...] [--out DIR] [--force]
    tuneforge data lint path/to/file.jsonl [--format chat|alpaca|completion|sharegpt|csv_qa] [key=value ...]
    tuneforge data rules
    tuneforge data show [recipe=...] [key=value ...] [--n 3] [--split train] [--color auto|always|never]

``key=value`` pairs are Hydra overrides: the run config is composed as for ``train``, so token counts use
the run's tokenizer and seq_len. Exit status: 0 clean, 1 warnings only, 2 errors (or unreadable input).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from tuneforge.errors import DataError
from tuneforge.schema.dataset import FORMAT_NAMES, DatasetConfig

EPILOG = """exit status: 0 clean (no findings), 1 warnings only, 2 errors (rows rejected, dataset unusable,
or input unreadable). Rules: `tuneforge data rules`."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tuneforge data", description="prepare or lint fine-tuning data",
                                epilog=EPILOG)
    sub = p.add_subparsers(dest="action", required=True, metavar="{prepare,lint,rules,show,distill}")
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
    return p


def _overrides(values: list[str]) -> list[str]:
    bad = [v for v in values if "=" not in v]
    if bad:
        raise DataError(f"expected key=value overrides, got {bad[0]!r} (e.g. dataset=dalat-tourism)")
    return values


def cmd_data(args: list[str]) -> int:
    ns = _parser().parse_args(args)
    if ns.action == "rules":
        from tuneforge.data.report import rules_table

        print(rules_table())
        return 0
    if ns.action == "prepare":
        return _prepare(ns)
    if ns.action == "distill":
        from tuneforge.distill import cmd_distill

        return cmd_distill([*ns.options, *(["--yes"] if ns.yes else [])])
    if ns.action == "show":
        from tuneforge.config.compose import load_run_config
        from tuneforge.data.show import show_examples, use_color

        if ns.n < 1:
            raise DataError("--n must be >= 1")
        run = load_run_config(_overrides(ns.overrides), command="data show")
        print(show_examples(run, n=ns.n, split=ns.split, color=use_color(ns.color)), end="")
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


def _lint(ns: argparse.Namespace) -> int:
    from tuneforge.data.formats import guess_format
    from tuneforge.data.pipeline import TokenOptions, run_pipeline
    from tuneforge.data.report import build_report, render_summary

    path: Path = ns.path
    from tuneforge.data.source_file import source_file_problem

    if (problem := source_file_problem(path)) is not None:
        raise DataError(f"{path}: {problem}")
    overrides = _overrides(ns.overrides)
    explicit_dataset = any(o.split("=", 1)[0].lstrip("+~") == "dataset" for o in overrides)
    run = None
    if explicit_dataset or not ns.no_tokens:
        from tuneforge.config.compose import load_run_config

        run = load_run_config(overrides)
    if explicit_dataset and run is not None:
        ds = dataclasses.replace(run.dataset, path=str(path))
        fmt = ns.format or ds.format
    else:
        fmt = ns.format or guess_format(path)
        ds = DatasetConfig(name=path.stem, path=str(path), format=fmt)
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
