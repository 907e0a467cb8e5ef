"""Dataset preparation: source file -> linted, augmented, grouped train/val/test chat JSONL, cached by content.

    prepare_splits(run.dataset)                     # what training calls: splits only, cached
    prepare_splits(run.dataset, run=run, count_tokens=True)   # + token stats and cost with the run's tokenizer

The cache key is derived from the source file's bytes and the whole dataset config, so an edited source or
config is never served stale. A prepared directory (``.cache/datasets/<name>-<key>/``) holds train.jsonl,
val.jsonl, test.jsonl, quarantine.jsonl and report.json (written last: its presence marks the directory
complete); token statistics are stored per tokenizer as report-tokens-<key>.json. Directories are built
under a temporary name and renamed into place, so a crash never leaves a half-written one that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import DataError
from tuneforge.paths import cache_dir, project_root
from tuneforge.schema.dataset import PREFERENCE_FORMATS, DatasetConfig, dataset_problems

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from tuneforge.schema.run import RunConfig

# bump when the prepared files or the report change shape: old cache entries are then ignored
PIPELINE_VERSION = "5"  # 4: categories.json beside the split files; 5: RAFT rows draw training variants


@dataclass(frozen=True)
class PreparedData:
    """Paths of the prepared chat-JSONL splits (each line: {"messages": [...]}) and their sizes."""

    train: Path
    val: Path
    test: Path
    sizes: dict[str, int]
    dir: Path | None = None
    report: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None


def source_path(ds: DatasetConfig) -> Path:
    p = Path(ds.path)
    return p if p.is_absolute() else project_root() / p


def data_key(ds: DatasetConfig, src: Path | None = None) -> str:
    """Hash of the source bytes + the dataset config + the pipeline version."""
    src = src or source_path(ds)
    h = hashlib.sha256(PIPELINE_VERSION.encode())
    with src.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(asdict(ds), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def tokenizer_id(run: RunConfig) -> str:
    """Identifies the run's tokenizer + chat template without loading it (no torch)."""
    m = run.model
    if m.tiny is not None:
        from tuneforge.models import tiny_model_key

        base = f"tiny:{tiny_model_key(m.tiny)}"
    else:
        base = f"{m.tokenizer or m.name_or_path}@{m.revision or 'main'}"
    return f"{base}|{m.chat_template}"


def token_settings(run: RunConfig) -> dict[str, Any]:
    h = run.hparams
    return {"tokenizer": tokenizer_id(run), "seq_len": h.seq_len,
            "max_tokens": run.dataset.lint.max_tokens or h.seq_len, "micro_batch_size": h.micro_batch_size}


def tokens_key(run: RunConfig) -> str:
    return hashlib.sha256(json.dumps(token_settings(run), sort_keys=True).encode()).hexdigest()[:12]


def prepared_dir(ds: DatasetConfig) -> Path:
    return cache_dir() / "datasets" / f"{ds.name}-{data_key(ds)}"


def _check(ds: DatasetConfig) -> Path:
    problems = list(dataset_problems(ds))
    if problems:
        raise DataError("invalid dataset config: " + "; ".join(problems))
    src = source_path(ds)
    from tuneforge.data.source_file import source_file_problem

    if (problem := source_file_problem(src)) is not None:
        raise DataError(f"dataset.path: {src}: {problem} (dataset {ds.name!r})")
    return src


def prepare_splits(ds: DatasetConfig, *, run: RunConfig | None = None, count_tokens: bool = False,
                   force: bool = False) -> PreparedData:
    """Prepared splits for a dataset (cached). With ``run`` and ``count_tokens``: also token stats + cost.

    Raises DataError when the dataset is unusable (a lint error at dataset level, e.g. too few examples);
    rejected rows alone do not stop it: they are in quarantine.jsonl and counted in the report.
    """
    from tuneforge.data.report import build_report
    from tuneforge.rundir import atomic_write_json

    src = _check(ds)
    final = prepared_dir(ds)
    if ds.format in PREFERENCE_FORMATS:  # pairs / KTO rows: their own rules, same split and cache contract
        from tuneforge.data.preference import prepare_preference

        report = prepare_preference(ds, src, final, _display(src), force=force)
        return PreparedData(final / "train.jsonl", final / "val.jsonl", final / "test.jsonl", report["splits"],
                            dir=final, report=report, report_path=final / "report.json")
    want_tokens = count_tokens and run is not None
    tok_report = final / f"report-tokens-{tokens_key(run)}.json" if want_tokens else None
    base_report = final / "report.json"
    done = base_report.is_file() and (tok_report is None or tok_report.is_file())
    if force or not done:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            result = _run(ds, src, tmp, run if want_tokens else None)
            rag_rows = None
            if ds.rag_training.enabled:  # RAFT-style rows: passages in the prompt (tuneforge.data.rag_rows)
                from tuneforge.data.rag_rows import add_rag_rows

                rag_rows = add_rag_rows(ds, [tmp / "train.jsonl", tmp / "val.jsonl"])
                log.info("rag_training: %s (token counts are of the rows before the passages were added)", rag_rows)
            report = build_report(ds, src, result, final, run=run, with_tokens=False) | {"rag_training": rag_rows}
            atomic_write_json(tmp / "report.json", report)
            if tok_report is not None:
                report = build_report(ds, src, result, final, run=run, with_tokens=True) | {"rag_training": rag_rows}
                atomic_write_json(tmp / tok_report.name, report)
            _publish(tmp, final, replace=force)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report_path = tok_report if tok_report is not None else base_report
    report = json.loads(report_path.read_text(encoding="utf-8"))
    by_rule = report["findings"]["by_rule"]
    if "D050" in by_rule:
        raise DataError(f"dataset {ds.name!r} ({src}) is unusable: "
                        f"{report['counts']['examples_kept']} examples kept, at least "
                        f"{ds.lint.min_examples_error} needed; see {report_path}")
    sizes = report["splits"]
    return PreparedData(final / "train.jsonl", final / "val.jsonl", final / "test.jsonl", sizes,
                        dir=final, report=report, report_path=report_path)


def _run(ds: DatasetConfig, src: Path, out: Path, run: RunConfig | None) -> Any:
    from tuneforge.data.pipeline import TokenOptions, run_pipeline

    if run is None:
        return run_pipeline(ds, src, out, display_name=_display(src))
    from tuneforge.data.tokens import TokenCounter, auto_processes
    from tuneforge.models import load_tokenizer

    settings = token_settings(run)
    name = run.model.name_or_path if run.model.tiny is None else f"{run.model.name_or_path} (local BPE)"
    with TokenCounter(load_tokenizer(run), name=name, processes=auto_processes(src.stat().st_size)) as counter:
        tokens = TokenOptions(counter, max_tokens=settings["max_tokens"], seq_len=settings["seq_len"],
                              micro_batch_size=settings["micro_batch_size"])
        return run_pipeline(ds, src, out, tokens=tokens, display_name=_display(src))


def _display(src: Path) -> str:
    try:
        return str(src.relative_to(project_root()))
    except ValueError:
        return str(src)


def _publish(tmp: Path, final: Path, *, replace: bool) -> None:
    """Move a finished directory into place; if another process got there first, add only what is missing."""
    if replace and final.exists():
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(tmp, final)
        return
    except OSError:
        pass  # final exists (an earlier run, or another rank): same key = same splits
    for p in tmp.iterdir():
        if not (final / p.name).exists():
            os.replace(p, final / p.name)
    if not (final / "report.json").exists():  # the marker goes last
        raise DataError(f"could not publish prepared data into {final}")


__all__ = [
    "PIPELINE_VERSION",
    "PreparedData",
    "data_key",
    "prepare_splits",
    "prepared_dir",
    "source_path",
    "token_settings",
    "tokenizer_id",
    "tokens_key",
]
