"""RAFT-style training rows (``dataset.rag_training``): retrieved passages in the prompt, distractors included,
answers consistent with them.

When fine-tuning makes a model ignore its context (the ladder's counterfactual faithfulness of fine-tuned + RAG
below base + RAG), the training data is the cause: every answer was learned without a passage, so the model
answers from memory. This rewrites a share of the train and val rows (``share``; the test split is never
touched) into the form the model will see at serving time:

- the user turn becomes the dataset's RAG template (``dataset.rag``) holding ``k`` passages: the one that
  supports the answer (the passage holding most of its prices/distances/hours, else the one sharing most
  words with it) at a random position, and ``k - 1`` distractors drawn at random from the knowledge base
  (RAFT, Zhang et al. 2024);
- for a share (``counterfactual``) of the rows whose answer carries a changing value, that passage's values
  are changed (tuneforge.data.counterfactual) **and the answer's values with them**: the only way to answer
  right is to read the passage. Each row draws one of the training variants of the change (other factors
  than the measurement's, never its values): a measured counterfactual is never a value the model trained on.

The number of rows and their order stay the same (the split's category file still lines up).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from tuneforge.data.counterfactual import TRAINING_VARIANTS, apply_mapping, counterfactual, supporting_passage
from tuneforge.data.passages import Passage, load_passages
from tuneforge.schema.dataset import DatasetConfig


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def golden_passage(answer: str, passages: list[Passage], by_words: list[set[str]]) -> Passage:
    p = supporting_passage(answer, passages)
    if p is not None:
        return p
    aw = _words(answer)
    return passages[max(range(len(passages)), key=lambda i: len(aw & by_words[i]))]


def rag_row(ds: DatasetConfig, messages: list[dict], passages: list[Passage], by_words: list[set[str]],
            rng: random.Random) -> tuple[list[dict], bool]:
    """(the conversation with passages in its last user turn, whether it is a counterfactual row)."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    answer_at = next(i for i in range(last_user + 1, len(messages)) if messages[i]["role"] == "assistant")
    answer = messages[answer_at]["content"]
    gold = golden_passage(answer, passages, by_words)
    gold_text, changed = gold.text, False
    if rng.random() < ds.rag_training.counterfactual:
        case = counterfactual(gold, answer, 0, variant=rng.choice(TRAINING_VARIANTS))
        if case is not None:
            gold_text, answer, changed = case.passage, apply_mapping(answer, case), True
    others = [p for p in passages if p.id != gold.id]
    chosen = [p.text for p in rng.sample(others, min(ds.rag_training.k - 1, len(others)))]
    chosen.insert(rng.randrange(len(chosen) + 1), gold_text)
    block = "\n".join(ds.rag.passage.format(passage=t) for t in chosen)
    out = [dict(m) for m in messages]
    out[last_user]["content"] = ds.rag.template.format(passages=block, question=messages[last_user]["content"])
    out[answer_at]["content"] = answer
    return out, changed


def add_rag_rows(ds: DatasetConfig, split_files: list[Path]) -> dict[str, int]:
    """Rewrite ``share`` of the rows of each file in place; returns counts for the report."""
    cfg = ds.rag_training
    passages = load_passages(ds)
    by_words = [_words(p.text) for p in passages]
    counts = {"rows": 0, "with_passages": 0, "counterfactual": 0}
    for path in split_files:
        if not path.is_file():
            continue
        rng = random.Random(f"{cfg.seed}:{path.name}")
        lines = path.read_text(encoding="utf-8").splitlines()
        out = []
        for line in lines:
            if not line.strip():
                out.append(line)
                continue
            row = json.loads(line)
            counts["rows"] += 1
            if rng.random() < cfg.share:
                row["messages"], changed = rag_row(ds, row["messages"], passages, by_words, rng)
                counts["with_passages"] += 1
                counts["counterfactual"] += changed
            out.append(json.dumps(row, ensure_ascii=False))
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return counts
