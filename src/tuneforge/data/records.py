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

    __slots__ = ("bom", "category", "group", "line", "messages", "problems", "text")

    def __init__(self, line: int, messages: Any = None, category: str | None = None, group: str | None = None,
                 text: str = "", problems: list[tuple[str, str]] | None = None, bom: bool = False):
        self.line = line  # 1-based line of the source file where the record starts
        self.messages = messages  # list of {"role", "content"} once the reader could build it
        self.category = category
        self.group = group
        self.text = text  # the source text of the record (for the quarantine file)
        self.problems = problems or []
        self.bom = bom

    def __repr__(self) -> str:
        return f"Record(line={self.line}, messages={self.messages!r}, category={self.category!r})"


def nfc(text: str) -> str:
    """Vietnamese text arrives composed or decomposed; tokenizers and duplicate checks need one form."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def normalize_text(text: str) -> str:
    """For duplicate/contradiction checks: case, punctuation and spacing do not make a question different."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() of str is salted per process)."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8"))


def chat_line(messages: list[dict[str, str]]) -> str:
    """One chat-JSONL line (no newline): only role and content, UTF-8 text kept readable."""
    return json.dumps({"messages": [{"role": m["role"], "content": m["content"]} for m in messages]},
                      ensure_ascii=False)


def question_key(messages: list[dict[str, str]]) -> str:
    """The normalized conversation before the final answer (the 'question' for contradiction checks)."""
    return "\x1f".join(normalize_text(m["content"]) for m in messages[:-1] if m["role"] != "system")


def first_question(messages: list[dict[str, str]]) -> str:
    for m in messages:
        if m["role"] == "user":
            return m["content"]
    return ""
