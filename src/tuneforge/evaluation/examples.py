"""The held-out conversations an eval scores: the test split, sampled across source questions."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError
from tuneforge.schema.run import RunConfig
from tuneforge.turn_tokens import END_OF_TURN

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EvalExample:
    messages: list[dict]  # the whole conversation, ending with the reference assistant turn
    reference: str
    category: str | None = None  # the source row's category (dataset.fields.category), when it has one

    @property
    def prompt_messages(self) -> list[dict]:
        return self.messages[:-1]

    @property
    def prompt(self) -> str:
        users = [m["content"] for m in self.prompt_messages if m.get("role") == "user"]
        return users[-1] if users else ""

    @property
    def system(self) -> str | None:
        return next((m["content"] for m in self.messages if m.get("role") == "system"), None)


def load_test_examples(run: RunConfig, max_samples: int, split: str = "test") -> list[EvalExample]:
    """``max_samples`` conversations of the test split (or ``split="val"``), each cut after its last assistant turn.

    Sampled across source questions, not the first N rows: the variants of one question (augmentation)
    share its reference answer and sit next to each other, so the test split is grouped by reference answer
    and taken round-robin (one variant of every question before a second of any)."""
    from tuneforge.data.pipeline import split_categories
    from tuneforge.data.prepare import prepare_splits

    data = prepare_splits(run.dataset)
    path = Path(data.test if split == "test" else data.val)
    categories = split_categories(path) or []
    groups: dict[str, list[EvalExample]] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)  # an SFT conversation, or a preference pair (its prompt + chosen answer)
            msgs = row["messages"] if "messages" in row else [*row["prompt"], *row.get("chosen", [])]
            last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
            if last is None or last == 0:
                continue
            category = categories[n] if n < len(categories) else None
            ex = EvalExample(msgs[:last + 1], str(msgs[last]["content"]), category)
            groups.setdefault(ex.reference, []).append(ex)
    examples: list[EvalExample] = []
    queues = list(groups.values())
    while queues and len(examples) < max_samples:
        for q in queues:
            if q and len(examples) < max_samples:
                examples.append(q.pop(0))
        queues = [q for q in queues if q]
    if not examples:
        raise DataError(
            f"dataset {run.dataset.name!r}: the {split} split ({path}) has no conversation with an "
            f"assistant turn to evaluate; set dataset.split.{split} > 0 (now {getattr(run.dataset.split, split)})"
        )
    return examples




def stop_token_ids(tokenizer: Any) -> list[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN if t in vocab)
    return sorted(ids)


# --- loss on assistant tokens ---------------------------------------------------------------------------

def assistant_token_mask(tokenizer: Any, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input_ids, mask of assistant tokens): the same role masks the trainer used (tuneforge.data.masking)."""
    from tuneforge.data.masking import tokenize_with_role_mask

    enc = tokenize_with_role_mask(tokenizer, messages)
    return enc["input_ids"], enc["assistant_masks"]
