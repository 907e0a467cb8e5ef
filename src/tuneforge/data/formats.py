"""Readers and writers for the supported source formats, all to and from the canonical chat form.

    chat        {"messages": [{"role": "user", "content": ...}, ...]}             (OpenAI fine-tuning JSONL)
    alpaca      {"instruction": ..., "input": ..., "output": ..., ["system": ...]}
    completion  {"prompt": ..., "completion": ...}
    sharegpt    {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}
    csv_qa      CSV with a header: question, answer[, category][, system]

Field names come from ``dataset.fields`` (:class:`~tuneforge.schema.dataset.FieldMap`). Readers stream (one
record in memory at a time) and never raise on a bad row: the row comes back as a :class:`Record` carrying
its problem (invalid JSON, bad encoding, wrong shape), and the linter decides what happens to it. Roles,
order and empty content are not judged here either: that is lint's job, the same for every format.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.csv_format import (  # noqa: F401  (csv_qa, and the shared source rules)
    BAD_ENCODING,
    BAD_SCHEMA,
    BLANK_LINE,
    HAS_BOM,
    INVALID_JSON,
    _read_csv,
    _single_turn,
    _write_csv,
)
from tuneforge.data.records import Record
from tuneforge.errors import DataError
from tuneforge.schema.dataset import FieldMap

BOM = b"\xef\xbb\xbf"

# rule ids the readers attach (the full table is tuneforge.data.lint.RULES)

OVERSIZED = "D021"
# a row longer than this is rejected unread: a JSON line is parsed (and later tokenized) whole, at many times
# its size in memory; 8 MiB is some two million tokens, far beyond any seq_len
MAX_LINE_BYTES = 8 * 1024 * 1024


def _bounded_lines(f: Any, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, int]]:
    """(line, its full length) per line, holding at most ``limit`` bytes of one: the rest of a longer line
    is read past in chunks and the line comes back as its first 200 bytes."""
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw, len(raw)
            continue
        n = len(raw)
        head = raw[:200]
        while True:
            chunk = f.readline(1 << 20)
            n += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                break
        yield head, n


# --- JSON lines ---------------------------------------------------------------------------------------


def _read_json_records(path: Path, to_messages: Callable[[dict, Record], Any], fields: FieldMap
                       ) -> Iterator[Record]:
    """One Record per line (one loop, no nested generators: this is the million-row path)."""
    category_key, group_key = fields.category, fields.group
    decoder = json.JSONDecoder()
    decode = decoder.decode
    with path.open("rb") as f:
        for lineno, (raw, size) in enumerate(_bounded_lines(f), 1):
            if size > MAX_LINE_BYTES:
                yield Record(lineno, text=raw.decode("utf-8", errors="replace"), problems=[
                    (OVERSIZED, f"line of {size:,} bytes exceeds {MAX_LINE_BYTES:,}: rejected without parsing "
                                "(split the example, or trim it)")])
                continue
            bom = lineno == 1 and raw.startswith(BOM)
            if bom:
                raw = raw[len(BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                shown = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                yield Record(lineno, text=shown, bom=bom, raw=raw.rstrip(b"\r\n"), problems=[
                    (BAD_ENCODING, f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})")])
                continue
            text = text.rstrip("\r\n")
            rec = Record(lineno, text=text, bom=bom)
            if not text or text.isspace():
                rec.problems.append((BLANK_LINE, "blank line (skipped)"))
                yield rec
                continue
            try:
                obj = decode(text)
            except json.JSONDecodeError as exc:
                rec.problems.append((INVALID_JSON, f"invalid JSON: {exc.msg} (column {exc.colno})"))
                yield rec
                continue
            if type(obj) is not dict:
                rec.problems.append((BAD_SCHEMA, f"expected a JSON object, got {type(obj).__name__}"))
                yield rec
                continue
            rec.messages = to_messages(obj, rec)
            if category_key is not None:
                cat = obj.get(category_key)
                if cat is not None:
                    rec.category = cat if isinstance(cat, str) and cat else None
            if group_key is not None and obj.get(group_key) is not None:
                rec.group = str(obj[group_key])
            yield rec


def _need_str(obj: dict, key: str, rec: Record, *, optional: bool = False) -> str | None:
    v = obj.get(key)
    if v is None:
        if not optional:
            rec.problems.append((BAD_SCHEMA, f"missing field '{key}'"))
        return None
    if not isinstance(v, str):
        rec.problems.append((BAD_SCHEMA, f"field '{key}' must be a string, got {type(v).__name__}"))
        return None
    return v


def _system_prefix(obj: dict, fields: FieldMap, rec: Record) -> list[dict]:
    if fields.system is None:
        return []
    s = _need_str(obj, fields.system, rec, optional=True)
    return [{"role": "system", "content": s}] if s else []


# --- per format: source object -> messages, messages -> source object ------------------------------------


def _chat_to_messages(fields: FieldMap) -> Callable[[dict, Record], Any]:
    mkey, rkey, ckey = fields.messages, fields.role, fields.content
    canonical_keys = rkey == "role" and ckey == "content"

    def convert(obj: dict, rec: Record) -> Any:
        msgs = obj.get(mkey)
        if not isinstance(msgs, list):
            what = "missing" if msgs is None else f"a {type(msgs).__name__}, not a list"
            rec.problems.append((BAD_SCHEMA, f"field '{mkey}' is {what}"))
            return None
        if canonical_keys:
            rec.canonical = len(obj) == 1  # lint decides whether the messages themselves are canonical
            return msgs  # lint checks each message's shape; no copy on the common path
        out = []
        for m in msgs:
            out.append({"role": m.get(rkey), "content": m.get(ckey)} if isinstance(m, dict) else m)
        return out

    return convert


def _chat_from_messages(fields: FieldMap, messages: list[dict], category: str | None) -> dict:
    obj: dict[str, Any] = {fields.messages: [{fields.role: m["role"], fields.content: m["content"]}
                                             for m in messages]}
    if category is not None and fields.category:
        obj[fields.category] = category
    return obj


def _alpaca_to_messages(fields: FieldMap) -> Callable[[dict, Record], Any]:
    def convert(obj: dict, rec: Record) -> Any:
        instruction = _need_str(obj, fields.instruction, rec)
        extra = _need_str(obj, fields.input, rec, optional=True)
        output = _need_str(obj, fields.output, rec)
        if instruction is None or output is None:
            return None
        user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
        return [*_system_prefix(obj, fields, rec),
                {"role": "user", "content": user}, {"role": "assistant", "content": output}]

    return convert


def _alpaca_from_messages(fields: FieldMap, messages: list[dict], category: str | None) -> dict:
    system, user, answer = _single_turn(messages, "alpaca")
    obj: dict[str, Any] = {fields.instruction: user, fields.input: "", fields.output: answer}
    if system is not None and fields.system:
        obj[fields.system] = system
    if category is not None and fields.category:
        obj[fields.category] = category
    return obj


def _completion_to_messages(fields: FieldMap) -> Callable[[dict, Record], Any]:
    def convert(obj: dict, rec: Record) -> Any:
        prompt = _need_str(obj, fields.prompt, rec)
        completion = _need_str(obj, fields.completion, rec)
        if prompt is None or completion is None:
            return None
        return [*_system_prefix(obj, fields, rec),
                {"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]

    return convert


def _completion_from_messages(fields: FieldMap, messages: list[dict], category: str | None) -> dict:
    system, user, answer = _single_turn(messages, "completion")
    obj: dict[str, Any] = {fields.prompt: user, fields.completion: answer}
    if system is not None and fields.system:
        obj[fields.system] = system
    if category is not None and fields.category:
        obj[fields.category] = category
    return obj


def _sharegpt_to_messages(fields: FieldMap) -> Callable[[dict, Record], Any]:
    roles = dict(fields.speaker_roles)

    def convert(obj: dict, rec: Record) -> Any:
        turns = obj.get(fields.conversations)
        if not isinstance(turns, list):
            what = "missing" if turns is None else f"a {type(turns).__name__}, not a list"
            rec.problems.append((BAD_SCHEMA, f"field '{fields.conversations}' is {what}"))
            return None
        out: list[Any] = _system_prefix(obj, fields, rec)
        for t in turns:
            if not isinstance(t, dict):
                out.append(t)
                continue
            speaker = t.get(fields.speaker)
            # an unmapped speaker stays as written, so lint reports it as an unknown role
            out.append({"role": roles.get(speaker, speaker) if isinstance(speaker, str) else speaker,
                        "content": t.get(fields.text)})
        return out

    return convert


def _sharegpt_from_messages(fields: FieldMap, messages: list[dict], category: str | None) -> dict:
    speakers: dict[str, str] = {}
    for speaker, role in fields.speaker_roles.items():
        speakers.setdefault(role, speaker)  # first listed name per role: system, human, gpt
    obj: dict[str, Any] = {fields.conversations: [{fields.speaker: speakers[m["role"]], fields.text: m["content"]}
                                                  for m in messages]}
    if category is not None and fields.category:
        obj[fields.category] = category
    return obj


# --- registry -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    name: str
    reader: Callable[[Path, FieldMap], Iterator[Record]]
    writer: Callable[[Path, FieldMap, Iterable[tuple[list[dict], str | None]]], None]
    help: str


def _jsonl_reader(make: Callable[[FieldMap], Callable[[dict, Record], Any]]
                  ) -> Callable[[Path, FieldMap], Iterator[Record]]:
    return lambda path, fields: _read_json_records(path, make(fields), fields)


def _jsonl_writer(to_obj: Callable[[FieldMap, list[dict], str | None], dict]
                  ) -> Callable[[Path, FieldMap, Iterable[tuple[list[dict], str | None]]], None]:
    def write(path: Path, fields: FieldMap, items: Iterable[tuple[list[dict], str | None]]) -> None:
        with path.open("w", encoding="utf-8") as f:
            for messages, category in items:
                f.write(json.dumps(to_obj(fields, messages, category), ensure_ascii=False) + "\n")

    return write


def _csv_writer(path: Path, fields: FieldMap, items: Iterable[tuple[list[dict], str | None]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        _write_csv(f, fields, items)


FORMATS: dict[str, Format] = {
    "chat": Format("chat", _jsonl_reader(_chat_to_messages), _jsonl_writer(_chat_from_messages),
                   "OpenAI chat JSONL: {messages: [{role, content}]}"),
    "alpaca": Format("alpaca", _jsonl_reader(_alpaca_to_messages), _jsonl_writer(_alpaca_from_messages),
                     "JSONL: {instruction, input, output}"),
    "completion": Format("completion", _jsonl_reader(_completion_to_messages),
                         _jsonl_writer(_completion_from_messages), "JSONL: {prompt, completion}"),
    "sharegpt": Format("sharegpt", _jsonl_reader(_sharegpt_to_messages), _jsonl_writer(_sharegpt_from_messages),
                       "JSONL: {conversations: [{from, value}]}"),
    "csv_qa": Format("csv_qa", _read_csv, _csv_writer, "CSV: question, answer[, category][, system]"),
}


def _embedding_formats() -> dict[str, Format]:
    from tuneforge.data import embedding_formats as ef

    return {
        "pairs": Format("pairs", _jsonl_reader(ef.pairs_to_messages), ef.pairs_writer,
                        "JSONL (embeddings): {anchor, positive}"),
        "triplets": Format("triplets", _jsonl_reader(ef.triplets_to_messages), ef.no_writer("triplets"),
                           "JSONL (embeddings): {anchor, positive, negative}"),
        "scored_pairs": Format("scored_pairs", _jsonl_reader(ef.scored_pairs_to_messages),
                               ef.no_writer("scored_pairs"), "JSONL (embeddings): {text1, text2, score in [0, 1]}"),
    }


FORMATS.update(_embedding_formats())


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise DataError(f"unknown data format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


def guess_format(path: Path) -> str:
    """For ``data lint FILE`` without --format: .csv is csv_qa; JSONL is judged by the first record's keys."""
    if path.suffix.lower() == ".csv":
        return "csv_qa"
    with path.open("rb") as f:
        for raw in f:
            raw = raw.removeprefix(BOM).strip()
            if not raw:
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                return "chat"  # lint will report the line
            if isinstance(obj, dict):
                if "anchor" in obj:
                    return "triplets" if "negative" in obj else "pairs"
                for key, name in (("messages", "chat"), ("conversations", "sharegpt"),
                                  ("instruction", "alpaca"), ("prompt", "completion"), ("text1", "scored_pairs")):
                    if key in obj:
                        return name
            return "chat"
    return "chat"


def read_records(path: Path, fmt: str, fields: FieldMap | None = None) -> Iterator[Record]:
    from tuneforge.data.records import wide_encoding

    with contextlib.suppress(OSError), path.open("rb") as f:
        if enc := wide_encoding(f.read(4096)):
            iconv = enc.split(",")[0].replace(" ", "")
            raise DataError(f"{path}: the file is {enc}, not UTF-8: convert it (iconv -f {iconv} -t UTF-8 "
                            f"{path.name} > {path.stem}.utf8{path.suffix}) and use that")
    return get_format(fmt).reader(path, fields or FieldMap())


def write_records(path: Path, fmt: str, items: Iterable[tuple[list[dict], str | None]],
                  fields: FieldMap | None = None) -> None:
    """Write canonical conversations (messages, category) in a source format (round trips with read)."""
    get_format(fmt).writer(path, fields or FieldMap(), items)
