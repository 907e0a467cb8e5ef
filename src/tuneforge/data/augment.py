"""Augmentation, the seed workflow: each hand-written question -> variants of different register.

The templates live in the dataset YAML (``dataset.augment.templates``), not here. For each source question:
leftover numbering is stripped ("1. Đà Lạt..." -> "Đà Lạt..."), the inner question's first letter is
lower-cased unless it starts with a proper noun, templates are shuffled with a seed derived from the dataset
seed and the question (deterministic, independent of row order), and every variant starts with a capital
letter and ends with "?". The answer and the system prompt are carried unchanged onto every variant.

Extension point: an augmenter is anything with ``expand(question, key) -> list[str]`` registered in
AUGMENTERS. An LLM paraphraser would be one more entry (its own config, its own on-disk cache of
paraphrases keyed by the question, so reruns are offline and deterministic); nothing here touches a network.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Protocol

from tuneforge.data.records import normalize_text
from tuneforge.schema.dataset import AugmentConfig

# "1. ", "2) ", "(3) ", "Câu 4: ", "Q5. ", "- ", "* ", "• " at the start of a question
_NUMBERING = re.compile(
    r"^\s*(?:(?:câu(?: hỏi)?|question|q)\s*\d+\s*[:.)\-]\s*|\(?\d+\s*[.):/\-]\s+|\(\d+\)\s*|[-*•]\s+)+",
    re.IGNORECASE,
)
_END_PUNCT = re.compile(r"[\s?.!。…,;:]+$")
_SPACES = re.compile(r"\s+")


class Augmenter(Protocol):
    def expand(self, question: str, key: str) -> list[str]:
        """The questions to emit for one source question (the original first if it is kept)."""
        ...


def strip_numbering(text: str) -> str:
    return _NUMBERING.sub("", text, count=1).strip()


def capitalize_first(text: str) -> str:
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[:i] + ch.upper() + text[i + 1:]
    return text


def as_question(text: str) -> str:
    """Capitalized, single-spaced, ending with exactly one "?"."""
    text = _SPACES.sub(" ", text).strip()
    return capitalize_first(_END_PUNCT.sub("", text)) + "?"


def starts_with_proper_noun(text: str, proper_nouns: list[str]) -> bool:
    if any(text.startswith(p) for p in proper_nouns):
        return True
    first = text.split(maxsplit=1)[0] if text.strip() else ""
    # "TP.HCM", "ATM", "2 ngày": not a sentence-initial capital. Two capitalized words are no sign of a
    # name in Vietnamese ("Chợ Đà Lạt" is "chợ Đà Lạt" mid-sentence), hence the explicit list.
    return any(ch.isdigit() for ch in first) or (len(first) > 1 and first.isupper())


class TemplateAugmenter:
    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg
        self.templates = list(cfg.templates)
        self.proper_nouns = list(cfg.proper_nouns)

    def inner(self, question: str) -> tuple[str, str]:
        """(lower-cased-first form, as-written form) of the cleaned question, without its final "?"."""
        q = _END_PUNCT.sub("", _SPACES.sub(" ", strip_numbering(question)).strip())
        if not q or starts_with_proper_noun(q, self.proper_nouns):
            return q, q
        return q[0].lower() + q[1:], q

    def fill(self, template: str, question: str) -> str:
        lower, as_written = self.inner(question)
        return as_question(template.replace("{question}", lower).replace("{Question}", as_written))

    def expand(self, question: str, key: str) -> list[str]:
        original = as_question(self.inner(question)[1])
        out, seen = [], set()
        if self.cfg.keep_original:
            out.append(original)
            seen.add(normalize_text(original))
        order = list(range(len(self.templates)))
        random.Random(f"{self.cfg.seed}:{key}").shuffle(order)
        made = 0
        for i in order:
            if made >= self.cfg.variants:
                break
            variant = self.fill(self.templates[i], question)
            norm = normalize_text(variant)
            if norm in seen:  # a template that only restates the question adds nothing
                continue
            seen.add(norm)
            out.append(variant)
            made += 1
        return out


AUGMENTERS: dict[str, Callable[[AugmentConfig], Augmenter] | None] = {
    "none": None,
    "templates": TemplateAugmenter,
}


def make_augmenter(cfg: AugmentConfig) -> Augmenter | None:
    factory = AUGMENTERS[cfg.method]
    return factory(cfg) if factory is not None else None


def augment_messages(messages: list[dict[str, str]], augmenter: Augmenter, key: str) -> list[list[dict[str, str]]]:
    """One conversation -> one per question variant (the first user turn varies; the rest is carried)."""
    at = next(i for i, m in enumerate(messages) if m["role"] == "user")
    out = []
    for q in augmenter.expand(messages[at]["content"], key):
        variant = list(messages)
        variant[at] = {"role": "user", "content": q}
        out.append(variant)
    return out
