"""Reading one answer as a person would: is it usable, and if not, why (the eval and the preference-data
lint both ask this, so it lives in the data layer; tuneforge.evaluation.answer_checks reviews answer sets).

An answer is **usable** when it is not degenerate and passes the dataset's own checks:

- degenerate: empty; a repetition loop (a run of 3+ words repeated 3+ times, or fewer than half of its word
  pairs distinct); off topic (it shares none of the question's content terms: the weather question answered
  with ticket prices); cut off (no end of turn within ``max_new_tokens``); mostly not in the language of the
  reference (its share of non-ASCII letters far below the reference's: an English answer to a Vietnamese
  question); the Unicode replacement character (bytes cut mid-character); a word that is no word, or stray
  markup (tuneforge.data.words: "triệuện", "phoege", "</font-mce-section>");
- a wrong value: a price, a distance or a temperature (a number with its unit, tuneforge.data.passages.VALUE)
  that neither the reference answer nor the context the model was shown holds, judged only where the reference
  states a value of that kind ("vé khoảng 100.000–150.000 đồng" where the reference says 60.000–100.000); a
  value inside a reference range ("khoảng 80.000 đồng") is right; a temperature within 10 °C of the
  reference's range is right ("-15°C" where it says 18–23°C is wrong);
- a value beside something else: no sentence of the answer that carries a price or a distance names what the
  question asks about, where the reference names it beside its value ("Bánh tráng nướng bao nhiêu tiền?" answered
  "một nồi lẩu … khoảng 25.000–45.000 đồng": the right number on the wrong dish);
- the style checks (``dataset.style_checks``) that apply to it;
- the fact guard, both ways (``dataset.forbidden_claims``: the claim's regex, and the paraphrase check);
- the required claim of a probe question (``required``): the trap question "Đà Lạt có biển không?" must say
  there is no sea.

The usable rate heads the verdict: overlap metrics (ROUGE-L, chrF) and the style rate measure form, and a
model whose answers are word salad that opens with "Dạ" scores well on form.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

from tuneforge.data.passages import UNITS, VALUE, normalize_number
from tuneforge.data.words import Lexicon
from tuneforge.schema.dataset import DatasetConfig

LOOP_NGRAM = 3  # words
LOOP_REPEATS = 3  # the same word n-gram this many times = a loop
DISTINCT_MIN_WORDS = 24  # distinct-2 is judged only on answers at least this long
DISTINCT_2_MIN = 0.5
LANGUAGE_RATIO = 0.3  # the answer's non-ASCII letter share below 0.3 x the reference's = another language
LANGUAGE_MIN_SHARE = 0.08  # ... only for references that have that many non-ASCII letters

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFC", text).casefold())


def repetition_loop(text: str) -> str | None:
    """Why ``text`` loops ('"x y z" 4 times', 'distinct-2 0.31'), or None."""
    words = _words(text)
    # n-grams with a number are a list's structure ("150.000–250.000 đồng/người" per line), not a loop
    grams = Counter(g for g in (tuple(words[i:i + LOOP_NGRAM]) for i in range(len(words) - LOOP_NGRAM + 1))
                    if not any(w.isdigit() for w in g))
    if grams:
        gram, n = grams.most_common(1)[0]
        if n >= LOOP_REPEATS:
            return f"\"{' '.join(gram)}\" {n} times"
    if len(words) >= DISTINCT_MIN_WORDS:
        pairs = [tuple(words[i:i + 2]) for i in range(len(words) - 1)]
        distinct = len(set(pairs)) / len(pairs)
        if distinct < DISTINCT_2_MIN:
            return f"distinct-2 {distinct:.2f}"
    return None


TOPIC_STOP_SHARE = 0.06  # a word in at least 6% of the training questions is a function word, not a topic


class TopicCheck:
    """Is an answer about its question? The question's content terms (word pairs and words of 3+ letters that
    are not function words) must appear in the answer. Function words come from the data itself: the words of
    at least ``TOPIC_STOP_SHARE`` of the training questions ("Đà Lạt", "có", "không", "bao nhiêu", and the
    augmentation templates' "Xin hỏi", "Tư vấn giúp mình"), so no language-specific list is needed. A question
    made only of function words is never judged. Measured on the 128 Đà Lạt reference answers: 8 are judged
    off topic (6%: they answer "Thời tiết thế nào?" with "khí hậu", without the question's words)."""

    def __init__(self, questions: list[str]):
        df = Counter(w for q in questions for w in set(_words(q)))
        self.stop = {w for w, n in df.items() if n >= TOPIC_STOP_SHARE * max(len(questions), 1)}

    def terms(self, question: str) -> tuple[list[tuple[str, str]], list[str]]:
        w = _words(question)
        pairs = [(a, b) for a, b in zip(w, w[1:]) if a not in self.stop and b not in self.stop]
        return pairs, [a for a in w if a not in self.stop and len(a) >= 3]

    def off_topic(self, question: str, answer: str) -> bool:
        pairs, words = self.terms(question)
        if not pairs and not words:
            return False
        aw = _words(answer)
        return not (set(pairs) & set(zip(aw, aw[1:])) or set(words) & set(aw))


def non_ascii_share(text: str) -> float:
    letters = [c for c in unicodedata.normalize("NFC", text) if c.isalpha()]
    return sum(not c.isascii() for c in letters) / len(letters) if letters else 0.0


def wrong_language(answer: str, reference: str) -> bool:
    ref = non_ascii_share(reference)
    return ref >= LANGUAGE_MIN_SHARE and non_ascii_share(answer) < LANGUAGE_RATIO * ref


# the kinds a wrong value is judged on (hours in an itinerary are advice)
VALUE_KINDS = ("price", "distance", "temperature")
# a temperature is judged against the known range widened this much each side: "ban đêm dưới 15°C" admits a
# night of 8°C, not "-15°C" for a city whose days are 18–23°C
TEMPERATURE_SLACK = 10.0
_BELOW_ZERO = re.compile(r"(?:[-−]|\bâm\s)\s*$", re.IGNORECASE)


def _ranges(text: str) -> list[tuple[str, float, float, str]]:
    out = []
    text = unicodedata.normalize("NFC", text)
    for m in VALUE.finditer(text):
        a = float(normalize_number(m.group("a")))
        b = float(normalize_number(m.group("b"))) if m.group("b") else a
        kind, written = UNITS[m.group("unit").lower()], m.group(0)
        lead = text[max(0, m.start() - 4):m.start()]
        sign = _BELOW_ZERO.search(lead) if kind == "temperature" else None
        if sign:  # "-15°C", "âm 5°C"; in "-5–10°C" only the first number is below zero
            a = -a
            b = b if m.group("b") else a
            written = lead[sign.start():] + written
        out.append((kind, min(a, b), max(a, b), written))
    return out


def wrong_values(answer: str, reference: str | None, *context: str | None) -> list[str]:
    """The prices and distances of ``answer`` (as written) that the reference and the context do not hold."""
    if not reference:
        return []
    known = [r for t in (reference, *context) if t for r in _ranges(t)]
    judged = {kind for kind, *_ in _ranges(reference)} & set(VALUE_KINDS)
    wrong = []
    for kind, lo, hi, written in _ranges(answer):
        slack = TEMPERATURE_SLACK if kind == "temperature" else 0.0
        if kind in judged and not any(k == kind and klo - slack <= lo and hi <= khi + slack
                                      for k, klo, khi, _ in known):
            wrong.append(written)
    return list(dict.fromkeys(wrong))


# an answer's sentences, lines and list items ("… : - Xe máy: … - Xe công nghệ: …" written on one line); a dash
# between two numbers is a range ("25.000 - 45.000 đồng"), not a list
_SEGMENT = re.compile(r"\n+|(?<=[.!?])\s+|(?<!\d)\s+[-•*]\s+(?!\d)")


def _segments(text: str) -> list[str]:
    return [s for s in _SEGMENT.split(unicodedata.normalize("NFC", text)) if s.strip()]


def _names(segment: str, item: set[tuple[str, ...]]) -> bool:
    w = _words(segment)
    grams = {(a,) for a in w} | set(zip(w, w[1:]))
    return bool(grams & item)


def _item_terms(valued: list[str], question: str, topic: TopicCheck) -> set[tuple[str, ...]]:
    """The question's content word pairs that the reference names in a sentence carrying a value (``valued``),
    else its content words found there (empty: the reference names none beside its values)."""
    pairs, words = topic.terms(question)
    return ({p for p in pairs if any(_names(s, {p}) for s in valued)}
            or {(w,) for w in words if any(_names(s, {(w,)}) for s in valued)})


def misplaced_values(answer: str, reference: str | None, question: str,
                     topic: TopicCheck | None) -> tuple[list[str], list[str]]:
    """(the values of ``answer`` as written, the asked item's terms) when its values sit beside something other
    than what was asked, else ([], []): "Bánh tráng nướng bao nhiêu tiền?" answered "một nồi lẩu … khoảng
    25.000–45.000 đồng". The asked item is what the reference names in the sentence that carries its value:
    the question's content word pairs found there ("bánh tráng", "tráng nướng"), else its content words ("máy"
    in "- Xe máy: … 100.000–250.000 đồng/ngày").
    The answer passes when one of its sentences (or list items) carrying a value of that kind names the item.
    Judged only where the reference names the item beside its value (an itinerary's "- 7 giờ: … khoảng 12 km"
    names no item: not judged) and the answer states a value of that kind at all."""
    if not reference or topic is None:
        return [], []
    ref = {s: {k for k, *_ in _ranges(s) if k in VALUE_KINDS} for s in _segments(reference)}
    ref = {s: ks for s, ks in ref.items() if ks}  # the reference's sentences carrying a judged value
    item = _item_terms(list(ref), question, topic)
    if not item:
        return [], []
    kinds = set().union(*ref.values())
    valued = [(s, [r[3] for r in _ranges(s) if r[0] in kinds]) for s in _segments(answer)]
    valued = [(s, vs) for s, vs in valued if vs]
    if not valued or any(_names(s, item) for s, _ in valued):
        return [], []
    return list(dict.fromkeys(v for _, vs in valued for v in vs)), sorted(" ".join(t) for t in item)


def review_answer(ds: DatasetConfig, guard: Any, answer: str, *, reference: str | None, prompt: str,
                  new_tokens: int | None, max_new_tokens: int | None,
                  required: str | None = None, required_message: str = "",
                  topic: TopicCheck | None = None, lexicon: Lexicon | None = None,
                  context: str | None = None) -> list[str]:
    """The reasons ``answer`` is not usable (empty: usable). Each reason is one short phrase a reader checks.
    ``context``: text the model was shown beside the question (retrieved passages, few-shot examples): its
    words are words."""
    reasons: list[str] = []
    text = answer.strip()
    if not text:
        return ["empty answer"]
    loop = repetition_loop(text)
    if loop:
        reasons.append(f"repetition loop ({loop})")
    if topic is not None and topic.off_topic(prompt, text):
        reasons.append("off topic (none of the question's content words)")
    if "\ufffd" in text:
        reasons.append("broken characters (U+FFFD)")
    if lexicon is not None:
        broken = lexicon.non_words(text, prompt, reference, context)
        if broken:
            shown = ", ".join(f'"{w}"' for w in broken[:3]) + (f" +{len(broken) - 3}" if len(broken) > 3 else "")
            reasons.append(f"not a word ({shown})")
        markup = lexicon.stray_markup(text, prompt, reference, context)
        if markup:
            reasons.append(f"stray markup ({', '.join(m[:40] for m in markup[:2])})")
    if new_tokens is not None and max_new_tokens and new_tokens >= max_new_tokens:
        reasons.append(f"cut off (no end of turn within {max_new_tokens} tokens)")
    wrong = wrong_values(text, reference, prompt, context)
    if wrong:
        reasons.append(f"wrong value ({', '.join(w for w in wrong[:3])}; the reference: "
                       f"{', '.join(dict.fromkeys(r[3] for r in _ranges(reference or '') if r[0] in VALUE_KINDS))})")
    misplaced, asked = misplaced_values(text, reference, prompt, topic)
    if misplaced:
        reasons.append(f"value beside something else ({', '.join(misplaced[:3])}; no sentence with it names "
                       f"{' / '.join(repr(a) for a in asked)})")
    if wrong_language(text, reference or prompt):
        reasons.append("not in the language of the question")
    for c in ds.style_checks:
        if c.when_reference and (reference is None or not re.search(c.when_reference, reference, re.I)):
            continue  # a probe has no reference: only the checks that apply to every answer
        if not re.search(c.pattern, text, re.I):
            reasons.append(f"style: {c.description or c.id}")
    for hit in guard.find(text):
        how = "forbidden claim" if hit.check == "pattern" else "forbidden claim, paraphrased"
        reasons.append(f"{how} [{hit.id}]: \"{hit.match[:80]}\"")
    if required and not re.search(required, unicodedata.normalize("NFC", text), re.I):
        reasons.append(f"misses the right fact: {required_message or required}")
    return reasons
