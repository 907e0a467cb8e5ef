"""Read -> lint -> augment -> dedupe -> split -> write, streaming with flat memory.

Pass 1 streams the source once: each row is read, checked (shape, roles, order, empty content, fact guard),
rejected rows go straight to the quarantine file, kept rows are augmented and written as canonical chat
lines to a staging file, and a few fixed-size numbers per example go into compact arrays (source line,
hashes of the example, its question, its answer, group and system prompt, category id, token count).
Duplicates, contradictions, system-prompt consistency, category balance and the grouped split are then
decided on those arrays with numpy. Pass 2 streams the staging file into train/val/test (or the quarantine).
Memory is ~60 bytes per example plus one row at a time; nothing holds the dataset.

Counts are conserved and checked: source rows in = kept + rejected; examples generated = kept + rejected;
kept = train + val + test.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.augment import augment_messages, make_augmenter
from tuneforge.data.formats import BLANK_LINE, read_records
from tuneforge.data.lint import REJECTING, FactGuard, FindingLog, ProbeGuard, check_messages
from tuneforge.data.pipeline_parts import TokenOptions, _Columns, _LineWriter, _repeated, _TokenBatcher
from tuneforge.data.records import (
    Record,
    chat_line,
    first_question,
    match_key,
    normalize_text,
    question_key,
    stable_hash,
)
from tuneforge.data.split import SPLIT_NAMES, TRAIN, assign_splits
from tuneforge.data.stats import token_stats
from tuneforge.schema.dataset import DatasetConfig

_TOKEN_BATCH = 2048
_NO_CATEGORY = -1
_MAX_SYSTEM_PROMPTS = 10_000
_NUMPY_TYPES = {"i": np.int32, "q": np.int64, "Q": np.uint64, "h": np.int16}


@dataclass
class PipelineResult:
    log: FindingLog
    counts: dict[str, Any]
    sizes: dict[str, int]
    groups: dict[str, int]
    categories: dict[str, dict[str, int]]
    tokens: dict[str, Any] | None
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return self.log.exit_status


def run_pipeline(ds: DatasetConfig, source: Path, out_dir: Path | None, *, fmt: str | None = None,
                 tokens: TokenOptions | None = None, augment: bool = True, quarantine: Path | None = None,
                 display_name: str | None = None) -> PipelineResult:
    """Lint (and with ``out_dir``: augment, split, write) one source file. ``out_dir`` None = lint only.

    Writes into ``out_dir``: train.jsonl, val.jsonl, test.jsonl, quarantine.jsonl (the caller writes the
    report). Lint-only runs write the quarantine only where ``quarantine`` names a file.
    """
    t0 = time.perf_counter()
    fmt = fmt or ds.format
    shown = display_name or str(source)
    log = FindingLog(shown)
    guard = FactGuard(ds.forbidden_claims, ds.negation)
    from tuneforge.data.probes import probe_question_keys, probes_path

    probe_guard = ProbeGuard(probe_question_keys(ds), str(probes_path(ds))) if ds.probes else None
    augmenter = make_augmenter(ds.augment) if augment else None
    system_prompt = ds.system_prompt
    cols = _Columns()
    batcher = _TokenBatcher(tokens, cols, log) if tokens else None
    categories: dict[str, int] = {}
    cat_names: list[str] = []
    systems: dict[int, list[int]] = {}  # system prompt hash -> [examples, first line]
    counts = {"source_in": 0, "source_kept": 0, "source_rejected": 0, "blank_lines": 0}

    q_path, staged_path = None, None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        q_path, staged_path = out_dir / "quarantine.jsonl", out_dir / ".staged.jsonl"
    elif quarantine is not None:  # lint only: the quarantine still gets every rejected row, duplicates too
        q_path, staged_path = quarantine, quarantine.parent / f".{quarantine.name}.staged"
    q_file = q_path.open("w", encoding="utf-8") if q_path is not None else None
    staged = _LineWriter(staged_path) if staged_path is not None else None

    def quarantine_row(line: int, problems: list[tuple[str, str]], text: str, raw: bytes | None = None) -> None:
        if q_file is not None:  # bytes that are not UTF-8 are kept exactly, base64-encoded next to the text
            extra = ({"raw_base64": base64.b64encode(raw.rstrip(b"\r\n")).decode("ascii")} if raw is not None
                     else {})
            q_file.write(json.dumps({"line": line, "rules": [p[0] for p in problems],
                                     "reasons": [p[1] for p in problems], "text": text, **extra},
                                    ensure_ascii=False) + "\n")

    try:
        source_in = kept = 0
        for rec in read_records(source, fmt, ds.fields):
            problems = rec.problems
            if rec.bom:
                log.add(rec.line, "D003", "file starts with a UTF-8 byte-order mark (BOM); it is stripped")
            if problems:
                if problems[0][0] == BLANK_LINE:
                    counts["blank_lines"] += 1
                    log.add(rec.line, BLANK_LINE, problems[0][1])
                    continue
            elif rec.messages is None:
                continue  # a header line: not a row
            source_in += 1
            messages = None
            if rec.messages is not None:
                messages, more = check_messages(rec.messages)
                if more:
                    problems.extend(more)
            if messages is not None and guard:
                problems.extend(guard.check(messages))
            if messages is not None and probe_guard:
                problems.extend(probe_guard.check(messages))
            if problems:
                for rule, msg in problems:
                    log.add(rec.line, rule, msg)
                if messages is None or any(rule in REJECTING for rule, _ in problems):
                    quarantine_row(rec.line, problems, rec.text, rec.raw)
                    continue
            kept += 1
            _stage(rec, messages, system_prompt, augmenter, cols, batcher, categories, cat_names, systems, staged)
        counts.update(source_in=source_in, source_kept=kept, source_rejected=source_in - kept)
        if batcher is not None:
            batcher.finish()
    finally:
        if staged is not None:
            staged.close()

    n = len(cols.line)
    counts["examples_generated"] = n
    try:
        status, split = _decide(ds, cols, cat_names, systems, log)
        kept = status == 0
        counts["examples_kept"] = int(kept.sum())
        counts["examples_rejected"] = n - counts["examples_kept"]
        sizes: dict[str, int] = {}
        group_counts: dict[str, int] = {}
        if out_dir is not None:
            sizes = {name: int(((split == i) & kept).sum()) for i, name in enumerate(SPLIT_NAMES)}
            group_counts = {name: int(np.unique(cols.view("group")[(split == i) & kept]).size)
                            for i, name in enumerate(SPLIT_NAMES)}
        files: dict[str, str] = {}
        if staged_path is not None:
            files = _route(staged_path, out_dir, status, split, cols, q_file)
            if out_dir is not None and cat_names:
                _write_categories(out_dir, status, split, cols, cat_names)
    finally:
        if q_file is not None:
            q_file.close()
    if q_path is not None:
        files["quarantine"] = str(q_path)

    assert counts["source_in"] == counts["source_kept"] + counts["source_rejected"], counts
    assert counts["examples_generated"] == counts["examples_kept"] + counts["examples_rejected"], counts
    if out_dir is not None:
        assert counts["examples_kept"] == sum(sizes.values()), (counts, sizes)

    cat_ids = cols.view("category")
    cat_table = {name: {s: int(((cat_ids == i) & kept & (split == j)).sum()) for j, s in enumerate(SPLIT_NAMES)}
                 for i, name in enumerate(cat_names)}
    tok = None
    if tokens is not None:
        lengths = cols.view("tokens")[kept]
        tok = token_stats(lengths, split[kept] if out_dir is not None else None, seq_len=tokens.seq_len,
                          max_tokens=tokens.max_tokens,
                          micro_batch_size=tokens.micro_batch_size, counter_name=tokens.counter.name)
    return PipelineResult(log=log, counts=counts, sizes=sizes, groups=group_counts, categories=cat_table,
                          tokens=tok, files=files, seconds=time.perf_counter() - t0)


def _stage(rec: Record, messages: list[dict[str, str]], system_prompt: str | None, augmenter: Any,
           cols: _Columns, batcher: _TokenBatcher | None, categories: dict[str, int], cat_names: list[str],
           systems: dict[int, list[int]], staged: Any) -> None:
    # the source line is reused as output when nothing about the conversation changes
    reuse = rec.canonical and augmenter is None and messages is rec.messages
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
        reuse = False
    qkey = question_key(messages)
    group = stable_hash(rec.group if rec.group is not None else qkey)
    if rec.category is None:
        cat = _NO_CATEGORY
    else:
        cat = categories.get(rec.category)
        if cat is None:
            cat = categories[rec.category] = len(cat_names)
            cat_names.append(rec.category)
    variants = [messages] if augmenter is None else augment_messages(
        messages, augmenter, normalize_text(first_question(messages)))
    system = hash(messages[0]["content"]) if messages[0]["role"] == "system" else 0
    seen = systems.get(system)
    if seen is not None:
        seen[0] += len(variants)
    elif len(systems) < _MAX_SYSTEM_PROMPTS:  # past that many, the rest are minorities anyway
        systems[system] = [len(variants), rec.line]
    line = rec.line
    for v in variants:
        text = rec.text if reuse else chat_line(v, rec.extra)
        if staged is not None:
            staged.add(text)
        cols.line.append(line)
        cols.exact.append(hash(text))
        cols.question.append(hash(qkey if v is messages else question_key(v)))
        cols.answer.append(hash(match_key(v[-1]["content"])))
        cols.group.append(group)
        cols.system.append(system)
        cols.category.append(cat)
        if batcher is not None:
            batcher.add(v, line)


def _decide(ds: DatasetConfig, cols: _Columns, cat_names: list[str], systems: dict[int, list[int]],
            log: FindingLog) -> tuple[np.ndarray, np.ndarray]:
    """Duplicates, contradictions, system prompts, counts, categories and the split, on the arrays.

    Returns (status per example: 0 kept / 1 duplicate / 2 near-duplicate, split id per example).
    """
    n = len(cols.line)
    lines = cols.view("line")
    status = np.zeros(n, dtype=np.int8)
    cap = log.cap
    if n:
        rows, first = _repeated(cols.view("exact"))
        later = rows != first
        dup, dup_first = rows[later], first[later]
        order = np.argsort(dup, kind="stable")  # report in line order
        dup, dup_first = dup[order], dup_first[order]
        status[dup] = 1
        log.add_many("D030", lines[dup[:cap]], [f"duplicate of line {lines[f]}" for f in dup_first[:cap]],
                     int(dup.size))

        with np.errstate(over="ignore"):
            norm = cols.view("question").view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            norm ^= cols.view("answer").view(np.uint64)
        rows, first = _repeated(norm)
        del norm
        later = (rows != first) & (status[rows] == 0)
        near, near_first = rows[later], first[later]
        order = np.argsort(near, kind="stable")
        near, near_first = near[order], near_first[order]
        status[near] = 2
        log.add_many("D031", lines[near[:cap]],
                     [f"same as line {lines[f]} up to case, punctuation and spacing" for f in near_first[:cap]],
                     int(near.size))

    kept = status == 0
    kept_idx = np.flatnonzero(kept)
    if kept_idx.size:
        q = cols.view("question")[kept_idx]
        rows, first = _repeated(q)
        del q
        answers = cols.view("answer")
        contra = answers[kept_idx[rows]] != answers[kept_idx[first]]
        bad, bad_first = kept_idx[rows[contra]], kept_idx[first[contra]]
        order = np.argsort(bad, kind="stable")
        bad, bad_first = bad[order], bad_first[order]
        log.add_many("D032", lines[bad[:cap]],
                     [f"same question as line {lines[f]} with a different answer" for f in bad_first[:cap]],
                     int(bad.size))

        if len(systems) > 1:  # counted in pass 1 (hash -> [count, first line])
            major, (count, major_line) = max(systems.items(), key=lambda kv: kv[1][0])
            system_col = cols.view("system")
            odd = np.flatnonzero((system_col != major) & kept)
            what = f"{count} examples use the system prompt of line {major_line}"
            log.add_many("D040", lines[odd[:cap]],
                         [("no system prompt" if system_col[i] == 0 else "a different system prompt") + f"; {what}"
                          for i in odd[:cap]], int(odd.size))

    n_kept = int(kept_idx.size)
    lint = ds.lint
    if n_kept < lint.min_examples_error:
        log.add(0, "D050", f"{n_kept} examples kept; at least {lint.min_examples_error} are needed to train")
    elif n_kept < lint.min_examples_warning:
        log.add(0, "D051", f"only {n_kept} examples kept; {lint.min_examples_warning}+ are recommended")

    cats = cols.view("category")[kept_idx]
    have = {cat_names[i]: int((cats == i).sum()) for i in range(len(cat_names))}
    have = {k: v for k, v in have.items() if v}
    expected = list(lint.categories or [])
    if expected:
        unknown = [name for name in have if name not in expected]
        for name in unknown:
            i = cat_names.index(name)
            idx = kept_idx[cats == i]
            log.add_many("D061", lines[idx[:cap]],
                         [f"category {name!r} is not one of: {', '.join(expected)}"] * min(idx.size, cap),
                         int(idx.size))
        missing = [c for c in expected if c not in have]
        if missing:
            log.add(0, "D060", f"categories with no examples: {', '.join(missing)}")
    if len(have) > 1:
        big, small = max(have, key=have.get), min(have, key=have.get)
        if have[big] > lint.max_category_ratio * have[small]:
            log.add(0, "D060", f"category {big!r} has {have[big]} examples, {small!r} only {have[small]} "
                               f"(more than {lint.max_category_ratio:g}x)")
    del cats

    split = np.full(n, TRAIN, dtype=np.int8)
    if n_kept:
        split[kept_idx] = assign_splits(cols.view("group")[kept_idx], ds.split)
    return status, split


CATEGORIES_FILE = "categories.json"


def _write_categories(out_dir: Path, status: np.ndarray, split: np.ndarray, cols: _Columns,
                      cat_names: list[str]) -> None:
    """``categories.json``: each split's category per line, aligned with ``<split>.jsonl`` (eval groups by it).

    The split files stay plain chat rows (what every backend and OpenAI accept); the category rides beside.
    """
    kept = status == 0
    ids = cols.view("category")
    out: dict[str, list[str | None]] = {}
    for j, name in enumerate(SPLIT_NAMES):
        sel = ids[kept & (split == j)]
        out[name] = [cat_names[i] if 0 <= i < len(cat_names) else None for i in sel.tolist()]
    (out_dir / CATEGORIES_FILE).write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")


def split_categories(split_file: Path) -> list[str | None] | None:
    """The category of each line of a prepared split file, or None when the dataset has no categories."""
    path = split_file.parent / CATEGORIES_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get(split_file.stem)


def _route(staged_path: Path, out_dir: Path | None, status: np.ndarray, split: np.ndarray, cols: _Columns,
           q_file: Any) -> dict[str, str]:
    """Pass 2: staged lines -> train/val/test files (when out_dir is given), duplicates -> quarantine.

    Kept lines are copied as bytes (no decode/encode) and written in chunks.
    """
    paths = {name: out_dir / f"{name}.jsonl" for name in SPLIT_NAMES} if out_dir is not None else {}
    outs = [paths[name].open("wb") for name in SPLIT_NAMES] if paths else []
    bufs: list[list[bytes]] = [[] for _ in SPLIT_NAMES]
    # bytes index faster than numpy scalars in a per-line loop
    st, sp = status.tobytes(), split.tobytes()
    lines = cols.line
    reasons = {1: ("D030", "duplicate of an earlier line"),
               2: ("D031", "same as an earlier line up to case, punctuation and spacing")}
    try:
        with staged_path.open("rb") as f:
            for i, raw in enumerate(f):
                s = st[i]
                if s == 0:
                    if outs:
                        buf = bufs[sp[i]]
                        buf.append(raw)
                        if len(buf) >= 4096:
                            outs[sp[i]].write(b"".join(buf))
                            buf.clear()
                elif q_file is not None:
                    rule, why = reasons[s]
                    q_file.write(json.dumps({"line": lines[i], "rules": [rule], "reasons": [why],
                                             "text": raw.decode("utf-8").rstrip("\n")}, ensure_ascii=False) + "\n")
        for out, buf in zip(outs, bufs):
            out.write(b"".join(buf))
    finally:
        for o in outs:
            o.close()
    os.unlink(staged_path)
    return {name: str(p) for name, p in paths.items()}
