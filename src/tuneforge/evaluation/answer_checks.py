"""Reviewing sets of generated answers (eval): each answer by :func:`tuneforge.data.answer_review.review_answer`
(degeneration, style checks, fact guard, a probe's required fact), with the topic check learnt from the
dataset's prepared training split.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from tuneforge.data.answer_review import TopicCheck, repetition_loop, review_answer, wrong_language
from tuneforge.data.words import Lexicon
from tuneforge.schema.dataset import DatasetConfig

__all__ = ["Lexicon", "TopicCheck", "lexicon", "repetition_loop", "review_answer", "review_answers", "topic_check",
           "wrong_language"]


def _train_split(ds: DatasetConfig) -> str | None:
    """The prepared training split the checks learn from, as the user wrote it: with
    ``dataset.rag_training`` the user turns carry retrieved passages, whose words would all count as function
    words ("Langbiang", "bánh tráng" in most prompts) and leave the topic check judging "leo" and "cái"."""
    import copy

    from tuneforge.data.prepare import prepare_splits

    if ds.rag_training.enabled:
        ds = copy.deepcopy(ds)
        ds.rag_training.enabled = False
    try:
        return str(prepare_splits(ds).train)
    except Exception:  # noqa: BLE001 - an unpreparable dataset has no learnt checks; the other checks still run
        return None


def _turns(train_path: str) -> list[dict[str, str]]:
    import json

    turns: list[dict[str, str]] = []
    with open(train_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)  # an SFT conversation, or a preference pair's prompt and sides
                turns += [m for m in row.get("messages", row.get("prompt", [])) if isinstance(m, dict)]
                for side in ("chosen", "rejected", "completion"):
                    v = row.get(side)
                    turns += ([{"role": "assistant", "content": v}] if isinstance(v, str)
                              else [m for m in v or [] if isinstance(m, dict)])
    return turns


def topic_check(ds: DatasetConfig) -> TopicCheck | None:
    """The topic check for a dataset, from the user turns of its prepared training split (None when there is
    none to learn function words from). Built once per prepared split: eval reviews four sets of answers."""
    path = _train_split(ds)
    return _topic_check_of(path) if path else None


@functools.lru_cache(maxsize=4)
def _topic_check_of(train_path: str) -> TopicCheck | None:
    questions = [m["content"] for m in _turns(train_path) if m.get("role") == "user"]
    return TopicCheck(questions) if len(questions) >= 20 else None


def lexicon(ds: DatasetConfig) -> Lexicon | None:
    """The words the dataset writes (tuneforge.data.words): every turn of its prepared training split, its
    system prompt and its knowledge base. None without ``dataset.language`` (no syllable grammar to judge
    the words the data lacks) or without a training split."""
    if not ds.language:
        return None
    path = _train_split(ds)
    if path is None:
        return None
    from tuneforge.data.passages import load_passages

    passages = tuple(p.text for p in load_passages(ds, lenient=True)) if ds.passages else ()
    return _lexicon_of(path, ds.language, ds.system_prompt or "", passages)


@functools.lru_cache(maxsize=4)
def _lexicon_of(train_path: str, language: str, system: str, passages: tuple[str, ...]) -> Lexicon:
    return Lexicon([*(str(m.get("content") or "") for m in _turns(train_path)), system, *passages], language)


def review_answers(ds: DatasetConfig, answers: list[str], *, references: list[str | None], prompts: list[str],
                   new_tokens: list[int] | None, max_new_tokens: int | None,
                   required: list[tuple[str | None, str]] | None = None,
                   contexts: list[str | None] | None = None) -> dict[str, Any]:
    """Per answer: usable or the reasons it is not; the usable rate (0-100) and the count of each reason.
    ``contexts``: per answer, what the model was shown beside the question (retrieved passages): its values
    are right values and its words are words."""
    from tuneforge.data.lint import FactGuard

    guard = FactGuard(ds.forbidden_claims, ds.negation)
    topic, words = topic_check(ds), lexicon(ds)
    reasons = []
    for i, a in enumerate(answers):
        req, msg = required[i] if required else (None, "")
        reasons.append(review_answer(ds, guard, a, reference=references[i], prompt=prompts[i],
                                     new_tokens=new_tokens[i] if new_tokens else None,
                                     max_new_tokens=max_new_tokens, required=req, required_message=msg,
                                     topic=topic, lexicon=words, context=contexts[i] if contexts else None))
    usable = [not r for r in reasons]
    kinds = Counter(r.split(" (")[0].split(":")[0] for rs in reasons for r in rs)
    return {"usable": usable, "reasons": reasons, "n": len(answers), "n_usable": sum(usable),
            "usable_rate": 100.0 * sum(usable) / len(answers) if answers else 0.0,
            "reason_counts": dict(kinds.most_common())}
