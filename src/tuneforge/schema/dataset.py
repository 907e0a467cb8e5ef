"""Dataset schema: one YAML in conf/dataset/ per dataset (adding a dataset = one YAML file, no Python).

A dataset names its source file and format, how the format's fields map onto chat messages, the system
prompt, the split ratios, the augmentation templates, the lint limits and the forbidden claims (fact guard).
Nothing here imports more than the standard library and omegaconf: ``plan`` imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

FORMAT_NAMES = ("chat", "alpaca", "completion", "sharegpt", "csv_qa", "pairs", "triplets", "scored_pairs",
                "preference", "kto")
# embedding-training formats (tuneforge.data.embedding_formats); the others are conversations
EMBEDDING_FORMATS = ("pairs", "triplets", "scored_pairs")
# preference-tuning formats (tuneforge.data.preference): prompt + chosen + rejected, or KTO's prompt + completion
# + desirable; they train objective=dpo|orpo|kto, never SFT
PREFERENCE_FORMATS = ("preference", "kto")
AUGMENT_METHODS = ("none", "templates")


@dataclass
class FieldMap:
    """Names of the source fields, per format. Only the ones the dataset's format uses are read."""

    messages: str = "messages"  # chat: the list of {role, content}
    role: str = "role"
    content: str = "content"
    conversations: str = "conversations"  # sharegpt: the list of {from, value}
    speaker: str = "from"
    text: str = "value"
    instruction: str = "instruction"  # alpaca
    input: str = "input"
    output: str = "output"
    prompt: str = "prompt"  # completion
    completion: str = "completion"
    question: str = "question"  # csv_qa
    answer: str = "answer"
    anchor: str = "anchor"  # pairs / triplets (embedding training)
    positive: str = "positive"
    negative: str = "negative"  # triplets
    text1: str = "text1"  # scored_pairs: two texts and a similarity score in [0, 1]
    text2: str = "text2"
    score: str = "score"
    chosen: str = "chosen"  # preference: the better answer (text, or a list of assistant messages)
    rejected: str = "rejected"  # preference: the worse answer
    desirable: str = "desirable"  # kto: is `completion` a good answer (true/false, yes/no)
    category: Optional[str] = "category"  # any format: a per-row category (missing column/key = none)
    group: Optional[str] = None  # any format: rows sharing a value stay in one split (default: same question)
    system: Optional[str] = "system"  # alpaca/completion/csv_qa: a per-row system prompt, if the field exists
    # sharegpt speaker names -> chat roles
    speaker_roles: dict[str, str] = field(default_factory=lambda: {
        "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    })


@dataclass
class SplitConfig:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 1234


@dataclass
class AugmentConfig:
    """The seed workflow: each source question -> variants built from templates of different register.

    A template holds ``{question}`` (the question with its first letter lower-cased unless it starts with a
    proper noun, final "?" removed) or ``{Question}`` (same, first letter kept). Every variant is
    capitalized and ends with "?".
    """

    method: str = "none"  # none | templates  (an LLM paraphraser would be one more entry in AUGMENTERS)
    templates: list[str] = field(default_factory=list)
    variants: int = 9  # template variants per source question (at most len(templates))
    keep_original: bool = True  # also keep the question as written (after cleanup)
    seed: int = 0
    # the question keeps its capital first letter when it starts with one of these (e.g. "Đà Lạt"); other
    # questions are lower-cased at the start ("Chợ Đà Lạt ở đâu?" -> "Xin hỏi, chợ Đà Lạt ở đâu?")
    proper_nouns: list[str] = field(default_factory=list)


@dataclass
class ForbiddenClaim:
    """A wrong claim that must never appear in an assistant answer (regex, case-insensitive)."""

    id: str = MISSING
    pattern: str = MISSING
    message: str = ""  # what is right instead, shown with the finding
    # the paraphrase check: a sentence states the claim, in any wording or word order, when every one of these
    # regexes matches it, it has no negation (dataset.negation) and ``unless`` does not match it
    concepts: list[str] = field(default_factory=list)
    unless: Optional[str] = None


@dataclass
class StyleCheck:
    """A trait every generated answer should show (regex, case-insensitive), scored by eval on both models.

    ``when_reference``: the check applies only to examples whose reference answer matches this regex (e.g. the
    price disclaimer only where the reference answer is about prices); null: every example."""

    id: str = MISSING
    pattern: str = MISSING
    description: str = ""
    when_reference: Optional[str] = None


@dataclass
class LintConfig:
    max_tokens: Optional[int] = None  # token limit per example; null: the run's hparams.seq_len
    min_examples_error: int = 10
    min_examples_warning: int = 50
    categories: Optional[list[str]] = None  # expected categories (null: whatever the data holds)
    max_category_ratio: float = 3.0  # warn when the largest category exceeds the smallest by this factor


@dataclass
class RagConfig:
    """How retrieved passages (``dataset.passages``) enter the prompt: ``template`` replaces the user's question
    with a block holding ``{passages}`` (each passage through ``passage``) and ``{question}``."""

    template: str = "Context:\n{passages}\n\nQuestion: {question}"
    passage: str = "- {passage}"


@dataclass
class RagTrainingConfig:
    """RAFT-style rows (tuneforge.data.rag_rows): a share of the train/val rows get ``k`` passages in the prompt
    (the supporting one + random distractors); a share of those get changed values in passage and answer alike."""

    enabled: bool = False
    share: float = 0.5  # of the train and val rows
    k: int = 3  # passages per prompt
    counterfactual: float = 0.5  # of the rows with passages whose answer carries a price/distance/hour
    seed: int = 0


# the languages with a syllable grammar for eval's word check (tuneforge.data.words.SYLLABLE_GRAMMARS)
WORD_CHECK_LANGUAGES = ("vi",)


@dataclass
class DatasetConfig:
    name: str = MISSING
    path: str = MISSING  # source file, relative to the project root or absolute
    format: str = "chat"  # chat | alpaca | completion | sharegpt | csv_qa
    fields: FieldMap = field(default_factory=FieldMap)
    system_prompt: Optional[str] = None  # added to every example that has none
    # the language the answers are written in; one with a syllable grammar (vi) turns on eval's word check: an
    # answer with a word that is neither in the data nor a well-formed syllable is not usable
    language: Optional[str] = None
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lint: LintConfig = field(default_factory=LintConfig)
    forbidden_claims: list[ForbiddenClaim] = field(default_factory=list)  # the fact guard
    # a sentence with a match of this regex denies rather than states (the fact guard skips it): "không có biển"
    negation: Optional[str] = None
    style_checks: list[StyleCheck] = field(default_factory=list)  # eval: the answering style, per answer
    # eval: held-out questions with known right answers (csv: question, category, trap, required,
    # required_message), answered by both models beside the test split; training rows may not repeat them
    probes: Optional[str] = None
    # the knowledge base for retrieval (RAG): a CSV or JSONL of fact-bearing passages (id, category, passage),
    # linted by `tuneforge data passages`, retrieved into the prompt by the eval ladder and `chat rag=true`
    passages: Optional[str] = None
    rag: RagConfig = field(default_factory=RagConfig)
    rag_training: RagTrainingConfig = field(default_factory=RagTrainingConfig)
    # preference data: pairs held out of every stage (built from the SFT test questions); eval scores reward
    # accuracy on them beside the test split
    heldout: Optional[str] = None


def dataset_problems(ds: DatasetConfig, prefix: str = "dataset") -> Iterable[str]:
    """Every problem with a dataset config, each naming its key and what is valid."""
    if ds.format not in FORMAT_NAMES:
        yield f"{prefix}.format={ds.format!r} is not valid; choose one of: {', '.join(FORMAT_NAMES)}"
    if ds.format in EMBEDDING_FORMATS and ds.system_prompt:
        yield (f"{prefix}.system_prompt is set, but format {ds.format} holds embedding texts, not conversations; "
               f"set {prefix}.system_prompt=null")
    if ds.language is not None and ds.language not in WORD_CHECK_LANGUAGES:
        yield (f"{prefix}.language={ds.language!r} has no word check; choose one of: "
               f"{', '.join(WORD_CHECK_LANGUAGES)}, or null")
    s = ds.split
    for key in ("train", "val", "test"):
        v = getattr(s, key)
        if not 0 <= v <= 1:
            yield f"{prefix}.split.{key}={v} must be in [0, 1]"
    if abs(s.train + s.val + s.test - 1.0) > 1e-6:
        yield f"{prefix}.split: train+val+test = {s.train + s.val + s.test:g} must be 1 (e.g. 0.8/0.1/0.1)"
    a = ds.augment
    if a.method not in AUGMENT_METHODS:
        yield f"{prefix}.augment.method={a.method!r} is not valid; choose one of: {', '.join(AUGMENT_METHODS)}"
    if a.method == "templates":
        if not a.templates:
            yield f"{prefix}.augment.templates is empty: list templates holding {{question}} or {{Question}}"
        for i, t in enumerate(a.templates):
            if "{question}" not in t and "{Question}" not in t:
                yield f"{prefix}.augment.templates[{i}]={t!r} must contain {{question}} or {{Question}}"
        if a.variants < 0:
            yield f"{prefix}.augment.variants={a.variants} must be >= 0"
    lint = ds.lint
    if lint.max_tokens is not None and lint.max_tokens < 1:
        yield f"{prefix}.lint.max_tokens={lint.max_tokens} must be >= 1 (or null for hparams.seq_len)"
    if lint.min_examples_error > lint.min_examples_warning:
        yield f"{prefix}.lint.min_examples_error must be <= {prefix}.lint.min_examples_warning"
    if lint.max_category_ratio < 1:
        yield f"{prefix}.lint.max_category_ratio={lint.max_category_ratio} must be >= 1"
    for i, check in enumerate(ds.style_checks):
        yield from _regex_problems(f"{prefix}.style_checks[{i}]", f" ({check.id})",
                                   (("pattern", check.pattern), ("when_reference", check.when_reference)))
    seen: set[str] = set()
    for i, claim in enumerate(ds.forbidden_claims):
        if claim.id in seen:
            yield f"{prefix}.forbidden_claims[{i}].id={claim.id!r} is used twice"
        seen.add(claim.id)
        yield from _regex_problems(f"{prefix}.forbidden_claims[{i}]", f" ({claim.id})",
                                   (("pattern", claim.pattern), ("unless", claim.unless),
                                    *((f"concepts[{j}]", c) for j, c in enumerate(claim.concepts))))
    yield from _regex_problems(prefix, "", (("negation", ds.negation),))
    rt = ds.rag_training
    for key in ("share", "counterfactual"):
        if not 0 <= getattr(rt, key) <= 1:
            yield f"{prefix}.rag_training.{key}={getattr(rt, key)} must be in [0, 1]"
    if rt.k < 1:
        yield f"{prefix}.rag_training.k={rt.k} must be >= 1"
    if rt.enabled and not ds.passages:
        yield (f"{prefix}.rag_training.enabled=true needs a knowledge base: set {prefix}.passages (a CSV/JSONL "
               "of passages: id, category, passage)")
    for key, value, needed in (("template", ds.rag.template, ("{passages}", "{question}")),
                               ("passage", ds.rag.passage, ("{passage}",))):
        missing = [n for n in needed if n not in value]
        if missing:
            yield f"{prefix}.rag.{key}={value!r} must contain {' and '.join(missing)}"


def _regex_problems(prefix: str, label: str, values: Iterable[tuple[str, str | None]]) -> Iterable[str]:
    """One problem per value that is not a valid regex (None: not set), naming its key."""
    for key, value in values:
        if value is None:
            continue
        try:
            re.compile(value)
        except re.error as exc:
            yield f"{prefix}.{key}{label}: invalid regex {value!r}: {exc}"
