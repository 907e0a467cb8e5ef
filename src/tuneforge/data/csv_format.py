"""The csv_qa format: a question/answer CSV (any delimiter csv.Sniffer finds), one row per record, and its writer.
Registered in :data:`tuneforge.data.formats.FORMATS` like the JSON-lines formats."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from tuneforge.data.records import Record
from tuneforge.errors import DataError
from tuneforge.schema.dataset import FieldMap

BOM = b"\xef\xbb\xbf"
# the source-reading rules every format shares (tuneforge.data.lint lists them all)
INVALID_JSON, BAD_ENCODING, HAS_BOM, BLANK_LINE, BAD_SCHEMA = "D001", "D002", "D003", "D004", "D010"


def _single_turn(messages: list[dict], fmt: str) -> tuple[str | None, str, str]:
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    rest = messages[1:] if system is not None else messages
    if len(rest) != 2 or rest[0]["role"] != "user" or rest[1]["role"] != "assistant":
        raise DataError(f"format {fmt} holds one user turn and one answer; this conversation has "
                        f"{len(rest)} turns (write it as chat or sharegpt)")
    return system, rest[0]["content"], rest[1]["content"]


def _read_csv(path: Path, fields: FieldMap) -> Iterator[Record]:
    bad_lines: dict[int, str] = {}
    bad_raw: dict[int, bytes] = {}  # the source bytes of those lines, for the quarantine
    line_no = 0
    bom_seen = False

    def decoded() -> Iterator[str]:
        nonlocal line_no, bom_seen
        with path.open("rb") as f:
            for raw in f:
                line_no += 1
                if line_no == 1 and raw.startswith(BOM):
                    raw, bom_seen = raw[len(BOM):], True
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad_lines[line_no] = f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"
                    bad_raw[line_no] = raw
                    yield raw.decode("utf-8", errors="replace")

    reader = csv.reader(decoded())
    header = next(reader, None)
    if header is None:
        return
    cols = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in (fields.question, fields.answer) if c not in cols]
    if missing:
        raise DataError(f"{path}:1: csv_qa needs the columns {fields.question!r} and {fields.answer!r}; "
                        f"missing {', '.join(map(repr, missing))} (header: {', '.join(header)})")
    q_i, a_i = cols[fields.question], cols[fields.answer]
    c_i = cols.get(fields.category) if fields.category else None
    g_i = cols.get(fields.group) if fields.group else None
    s_i = cols.get(fields.system) if fields.system else None
    width = len(header)
    if bom_seen:  # the BOM sat on the header line: reported there, against no row
        yield Record(1, bom=True)
    prev_end = reader.line_num
    for row in reader:
        start, prev_end = prev_end + 1, reader.line_num
        rec = Record(start)
        if not row or all(not c.strip() for c in row):
            rec.problems.append((BLANK_LINE, "blank line (skipped)"))
            yield rec
            continue
        rec.text = ",".join(row)
        for ln in range(start, prev_end + 1):
            if ln in bad_lines:
                rec.problems.append((BAD_ENCODING, bad_lines.pop(ln)))
                rec.raw = (rec.raw or b"") + bad_raw.pop(ln)
        if len(row) != width:
            rec.problems.append((BAD_SCHEMA, f"expected {width} columns ({', '.join(header)}), got {len(row)}"))
            yield rec
            continue
        system = row[s_i] if s_i is not None and row[s_i].strip() else None
        rec.messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": row[q_i]}, {"role": "assistant", "content": row[a_i]}]
        if c_i is not None and row[c_i].strip():
            rec.category = row[c_i].strip()
        if g_i is not None and row[g_i].strip():
            rec.group = row[g_i].strip()
        yield rec


def _write_csv(f: TextIO, fields: FieldMap, items: Iterable[tuple[list[dict], str | None]]) -> None:
    rows = [(*_single_turn(m, "csv_qa"), c) for m, c in items]
    has_system = any(r[0] is not None for r in rows)
    has_category = any(r[3] is not None for r in rows) and fields.category
    header = [fields.question, fields.answer]
    if has_category:
        header.append(fields.category)
    if has_system and fields.system:
        header.append(fields.system)
    w = csv.writer(f, lineterminator="\n")
    w.writerow(header)
    for system, user, answer, category in rows:
        out = [user, answer]
        if has_category:
            out.append(category or "")
        if has_system and fields.system:
            out.append(system or "")
        w.writerow(out)
