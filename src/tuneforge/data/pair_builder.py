"""Preference pairs from what a user already has: the SFT data's reference answers as *chosen*, and a worse
answer as *rejected*, preferring one that fails an answer check (fact guard, style, degeneration).

Two sources of rejected answers:

- ``edits``: deterministic edits of the reference answer that each break exactly one thing the eval checks: a
  forbidden claim put in (the fact guard's claims, e.g. "Đà Lạt có biển"), the house style taken out, a
  repetition loop, or another question's answer (off topic). Only one thing differs between the sides, so
  the pair says what is wrong. No model needed.
- ``samples``: answers sampled from a model (the base, or an SFT run) for the same prompts; a sample that
  fails a check is preferred, a sample that passes every check is kept only if nothing else is left (and then
  only when it differs from the reference). ``tuneforge data pairs run=<dir>``.

Pairs are built from the SFT dataset's *train* split only, so the SFT test questions stay unseen; the
``heldout`` file is built the same way from the test split, for reward accuracy on pairs no stage trained on.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

# each sentence states a forbidden claim of conf/dataset/dalat-tourism.yaml (tests check the fact guard finds it)
WRONG_FACTS = (
    "Đà Lạt có biển, anh/chị có thể kết hợp tắm biển ở Đà Lạt ngay trong ngày.",
    "Đà Lạt là thành phố biển nên lúc nào cũng có gió biển mát.",
    "Đà Lạt thuộc tỉnh Khánh Hòa, gần biển Nha Trang.",
    "Đà Lạt nằm ở vùng Tây Bắc, gần Sa Pa.",
    "Bãi biển Đà Lạt rất đẹp vào buổi chiều.",
    "Đà Lạt có tuyết rơi vào mùa đông, anh/chị nhớ mang đồ trượt tuyết.",
    "Đà Lạt nóng quanh năm như Sài Gòn.",
    "Đà Lạt ở độ cao khoảng 500 m nên không lạnh.",
)
_SEA_TRAP = re.compile(r"không có biển|không phải (là )?thành phố biển", re.I)
# a reference answer that corrects a false premise ("Dạ, Đà Lạt không có biển ..."): its question is a trap, and
# the answer that plays along states the premise (the negation taken out). Every question variant of such an
# answer gets a "plays_along" pair, so the trap questions weigh in the pairs as they do in the eval's probes.
_PREMISE = re.compile(r"(?<!\w)(không|chẳng)\s+(?=(có|giáp|phải là|phải|thuộc|nằm ở)\s+(bãi\s+)?(biển|tuyết|thành phố "
                      r"biển|tỉnh Khánh Hòa|Khánh Hòa|vùng Tây Bắc|Tây Bắc)(?!\w))", re.I)


def reference_examples(split_file: Path) -> list[dict[str, Any]]:
    """Unique (answer -> its prompts) from a prepared SFT split: each answer with every question variant."""
    by_answer: dict[str, dict[str, Any]] = {}
    with split_file.open(encoding="utf-8") as f:
        for line in f:
            msgs = json.loads(line)["messages"]
            system = next((m["content"] for m in msgs if m["role"] == "system"), None)
            user = next(m["content"] for m in msgs if m["role"] == "user")
            answer = next(m["content"] for m in reversed(msgs) if m["role"] == "assistant")
            ex = by_answer.setdefault(answer, {"answer": answer, "system": system, "questions": []})
            ex["questions"].append(user)
    return list(by_answer.values())


def _body(answer: str) -> str:
    return re.sub(r"^\W*Dạ(\s+(không|vâng|có)\s+ạ)?[,.]?\s*", "", answer)


def wrong_fact(answer: str, i: int) -> str:
    """The reference answer with a forbidden claim in its first sentence (the house style kept)."""
    if _SEA_TRAP.search(answer):  # a trap question: the rejected side plays along with the false premise
        return "Dạ, " + _SEA_TRAP.sub("có biển", _body(answer), count=1)
    body = _body(answer)
    return f"Dạ, {WRONG_FACTS[i % len(WRONG_FACTS)]} {body[:1].upper()}{body[1:]}"


def plays_along(answer: str) -> str | None:
    """The answer of a trap question with its correction undone ("không có biển" -> "có biển"), or None when the
    answer corrects no premise."""
    if not _PREMISE.search(answer):
        return None
    return "Dạ, " + _PREMISE.sub("", _body(answer))


def no_style(answer: str) -> str:
    body = _body(answer).replace("chỉ mang tính tham khảo", "là như vậy")
    return body[:1].upper() + body[1:]


def looped(answer: str) -> str:
    first = re.split(r"(?<=[.!?])\s", _body(answer), maxsplit=1)[0]
    return "Dạ, " + " ".join([first] * 4)


EDITS = ("wrong_fact", "no_style", "looped", "off_topic")


def edit_pairs(examples: list[dict[str, Any]], *, per_answer: int = 2, seed: int = 0,
               states_claim: Callable[[str], Any] | None = None) -> Iterator[dict[str, Any]]:
    """Per reference answer: one pair with a forbidden claim put in, and ``per_answer - 1`` with another edit,
    each on another question variant; an answer that corrects a false premise also gets a "plays_along" pair on
    each remaining variant, kept only when ``states_claim`` (the fact guard) finds the claim in it, so such a
    pair always differs by a forbidden claim and never by a sentence that no longer makes sense."""
    rng = random.Random(seed)
    for i, ex in enumerate(examples):
        questions = list(dict.fromkeys(ex["questions"]))
        rng.shuffle(questions)
        kinds = ["wrong_fact", *[EDITS[1 + (i + k) % 3] for k in range(per_answer - 1)]]
        for k, kind in enumerate(kinds):
            if kind == "wrong_fact":
                rejected = wrong_fact(ex["answer"], i)
            elif kind == "no_style":
                rejected = no_style(ex["answer"])
            elif kind == "looped":
                rejected = looped(ex["answer"])
            else:
                rejected = examples[(i + 1 + len(examples) // 2) % len(examples)]["answer"]
            if rejected == ex["answer"]:
                continue
            yield {"prompt": questions[k % len(questions)], "chosen": ex["answer"], "rejected": rejected,
                   "kind": kind, "group": ex["answer"][:80]}
        along = plays_along(ex["answer"])
        if along and states_claim is not None and not states_claim(along):
            along = None
        for q in questions[len(kinds):] if along else ():  # the variants the edits above did not use
            yield {"prompt": q, "chosen": ex["answer"], "rejected": along, "kind": "plays_along",
                   "group": ex["answer"][:80]}


def sampled_pairs(examples: list[dict[str, Any]], samples: dict[str, list[str]],
                  reasons: Any) -> Iterator[dict[str, Any]]:
    """Chosen = the reference; rejected = the sampled answer that fails the most checks (``reasons(answer,
    question, reference)`` -> list of failures). A prompt whose samples all pass and equal the reference
    yields no pair."""
    for ex in examples:
        q = ex["questions"][0]
        scored = [(len(reasons(s, q, ex["answer"])), s) for s in samples.get(q, []) if s.strip() != ex["answer"]]
        if not scored:
            continue
        fails, worst = max(scored, key=lambda t: t[0])
        yield {"prompt": q, "chosen": ex["answer"], "rejected": worst,
               "kind": "sample-fails-check" if fails else "sample", "group": ex["answer"][:80]}


def write_pairs(path: Path, pairs: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
            n += 1
    return n
