"""The canonical record: a chat conversation (``messages``) plus where it came from.

Every reader turns its format into :class:`Record` objects; everything after reading (lint, augmentation,
split, writing) sees only this form. Written out, a record is one chat-JSONL line,
``{"messages": [{"role": ..., "content": ...}, ...]}``, which both the OpenAI fine-tuning API and axolotl's
``type: chat_template`` (``field_messages: messages``, role/content properties) accept.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import xxhash

ROLES = ("system", "user", "assistant")

_NON_WORD = re.compile(r"[\W_]+")


class Record:
    """One conversation read from a source. ``problems`` holds (rule id, message) found while reading."""

    __slots__ = ("bom", "canonical", "category", "extra", "group", "line", "messages", "problems", "raw", "text")

    def __init__(self, line: int, messages: Any = None, category: str | None = None, group: str | None = None,
                 text: str = "", problems: list[tuple[str, str]] | None = None, bom: bool = False,
                 raw: bytes | None = None):
        self.line = line  # 1-based line of the source file where the record starts
        self.messages = messages  # list of {"role", "content"} once the reader could build it
        self.category = category
        self.group = group
        self.text = text  # the source text of the record (for the quarantine file)
        self.problems = problems or []
        self.bom = bom
        self.raw = raw  # the source bytes when they are not valid UTF-8 (kept as is in the quarantine)
        # the source text is already a canonical chat line ({"messages": [{role, content}...]} only), so it
        # can be written as is once lint finds nothing to change (saves re-encoding a million rows)
        self.canonical = False
        # embedding formats: what the two-message form cannot hold ({"negative": str} or {"score": float}),
        # written next to "messages" in the prepared line
        self.extra: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Record(line={self.line}, messages={self.messages!r}, category={self.category!r})"


def is_nfc(text: str) -> bool:
    return unicodedata.is_normalized("NFC", text)


def nfc(text: str) -> str:
    """Vietnamese text arrives composed or decomposed; tokenizers and duplicate checks need one form."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def normalize_text(text: str) -> str:
    """For duplicate/contradiction checks: case, punctuation and spacing do not make a question different."""
    return _NON_WORD.sub(" ", text.lower()).strip()


_ASCII_PUNCT = bytes(range(33, 48)) + bytes(range(58, 65)) + bytes(range(91, 97)) + bytes(range(123, 127))
_PUNCT_TO_SPACE = bytes.maketrans(_ASCII_PUNCT, b" " * len(_ASCII_PUNCT))


def match_key(text: str) -> bytes:
    """The key duplicate and contradiction checks compare: case, ASCII punctuation and spacing removed.

    3x faster than :func:`normalize_text` (bytes.translate instead of a Unicode regex), which matters at a
    million rows; non-ASCII punctuation ("…", "–") still counts.
    """
    return b" ".join(text.lower().encode("utf-8").translate(_PUNCT_TO_SPACE).split())


def stable_hash(text: str | bytes) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() of str is salted per process)."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8") if isinstance(text, str) else text)


def chat_line(messages: list[dict[str, str]], extra: dict[str, Any] | None = None) -> str:
    """One chat-JSONL line (no newline): only role and content, UTF-8 text kept readable; ``extra`` (an
    embedding row's negative or score) follows the messages."""
    obj: dict[str, Any] = {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    if extra:
        obj.update(extra)
    return json.dumps(obj, ensure_ascii=False)


def question_key(messages: list[dict[str, str]]) -> bytes:
    """The normalized conversation before the final answer (the 'question' for contradiction checks)."""
    if len(messages) <= 3:  # the common single-turn case, without a generator
        m = messages[-2]
        return match_key(m["content"]) if m["role"] != "system" else b""
    return b"\x1f".join(match_key(m["content"]) for m in messages[:-1] if m["role"] != "system")


def first_question(messages: list[dict[str, str]]) -> str:
    for m in messages:
        if m["role"] == "user":
            return m["content"]
    return ""


# byte-order marks and NUL patterns of the encodings a text editor or Excel may save instead of UTF-8
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 LE"), (b"\x00\x00\xfe\xff", "UTF-32 BE"), (b"\xff\xfe", "UTF-16 LE"),
              (b"\xfe\xff", "UTF-16 BE"))


def wide_encoding(head: bytes) -> str | None:
    """The UTF-16/32 encoding a file's first bytes show (a byte-order mark, or ASCII text with every other
    byte NUL), or None. Such a file is not a UTF-8 file with bad lines: it is one problem, named once."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return f"{name}, with a byte-order mark"
    sample = head[:1024]
    if len(sample) >= 4 and sample.count(0) >= len(sample) // 4:
        if sample[0::4].count(0) == 0 and sample[1::4].count(0) == len(sample[1::4]) and sample[3::4].count(0) \
                == len(sample[3::4]) and sample[2::4].count(0) == len(sample[2::4]):
            return "UTF-32 LE"
        evens, odds = sample[0::2].count(0), sample[1::2].count(0)
        if odds >= len(sample[1::2]) * 0.6 and evens < odds / 4:
            return "UTF-16 LE"
        if evens >= len(sample[0::2]) * 0.6 and odds < evens / 4:
            return "UTF-16 BE"
    return None
