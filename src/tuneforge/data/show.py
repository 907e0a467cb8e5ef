"""``tuneforge data show``: N examples of the composed dataset as the model sees them, loss mask included.

    tuneforge data show [recipe=...] [dataset=...] [--n 3] [--split train|val|test] [--color auto|always|never]

Each example goes through the run's tokenizer and chat template (``apply_chat_template`` with
``return_assistant_tokens_mask``: what TRL's ``assistant_only_loss`` trains on). Trained tokens are shown
green on a terminal, or between ``[[`` and ``]]`` when piped; tokens past ``hparams.seq_len`` are cut
(``<<cut: N tokens>>``) because training never sees them. Like ``axolotl preprocess --debug``, so the
template and the mask can be checked before any GPU time is spent.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GREEN, RESET = "\033[32m", "\033[0m"
OPEN, CLOSE = "[[", "]]"


@dataclass
class ShownExample:
    text: str  # rendered, with the trained spans marked
    trained: int
    masked: int
    cut: int


def loss_mask(assistant_only: bool, tokenizer: Any,
              messages: list[dict[str, str]]) -> tuple[list[int], list[int], bool]:
    """(token ids, 1 = trained / 0 = masked, whether the mask is assistant-only), as the backend trains
    (``assistant_only``: the backend's declared loss mask is the assistant turns)."""
    has_markers = "generation" in (tokenizer.chat_template or "")
    if assistant_only and has_markers:
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return list(enc["input_ids"]), list(enc["assistant_masks"]), True
    enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    ids = list(enc["input_ids"])
    return ids, [1] * len(ids), False


def render(tokenizer: Any, ids: list[int], mask: list[int], seq_len: int, color: bool) -> ShownExample:
    kept, cut = ids[:seq_len], ids[seq_len:]
    parts: list[str] = []
    start = 0
    for i in range(1, len(kept) + 1):
        if i == len(kept) or mask[i] != mask[start]:
            piece = tokenizer.decode(kept[start:i], skip_special_tokens=False)
            if mask[start]:
                piece = f"{GREEN}{piece}{RESET}" if color else f"{OPEN}{piece}{CLOSE}"
            parts.append(piece)
            start = i
    if cut:
        parts.append(f"<<cut: {len(cut)} tokens past hparams.seq_len={seq_len}>>")
    trained = sum(mask[:seq_len])
    return ShownExample("".join(parts), trained, len(kept) - trained, len(cut))


def show_examples(run: Any, n: int = 3, split: str = "train", color: bool = False, *,
                  assistant_only: bool = True) -> str:
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.models import load_tokenizer

    prep = prepare_splits(run.dataset)
    path = Path(getattr(prep, split))
    tokenizer = load_tokenizer(run)
    out = []
    shown = 0
    mode = ""
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if shown >= n:
                break
            if not line.strip():
                continue
            messages = json.loads(line)["messages"]
            ids, mask, masked = loss_mask(assistant_only, tokenizer, messages)
            ex = render(tokenizer, ids, mask, run.hparams.seq_len, color)
            mode = ("assistant turns only (chat template's {% generation %} markers)" if masked
                    else "every token (no assistant-only mask: the template has no {% generation %} markers, "
                         "or the backend trains on inputs)")
            out.append(f"--- {split} example {shown + 1} ({path.name}:{line_no}): {len(ids)} tokens = "
                       f"{ex.trained} trained + {ex.masked} masked" + (f" + {ex.cut} cut" if ex.cut else ""))
            out.append(ex.text)
            shown += 1
    key = f"{GREEN}green{RESET}" if color else f"{OPEN}...{CLOSE}"
    head = [f"== {run.dataset.name} through {run.model.name_or_path}'s chat template "
            f"(backend={run.backend.name}); trained tokens: {key}; loss on {mode}"]
    return "\n".join(head + out) + "\n"


def use_color(choice: str, stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if choice == "always":
        return True
    if choice == "never":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())
