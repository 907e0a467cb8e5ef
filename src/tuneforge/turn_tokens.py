"""The tokens that open and close a chat turn, and the one rule for them: a turn token the vocabulary holds is
a *special* token. Generation stops at the end-of-turn token and every decode (``skip_special_tokens=True``:
chat, eval, transformers' server) drops it. A tokenizer rebuilt from GGUF metadata holds Gemma's
``<start_of_turn>`` / ``<end_of_turn>`` as plain vocabulary pieces; without this rule the answer ends in the
literal text ``<end_of_turn>``.
"""

from __future__ import annotations

from typing import Any

# end-of-turn tokens of common chat templates; generation stops at whichever the tokenizer has
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>", "<end_of_turn>")
# the tokens that open a turn or name its role: never part of an answer either
TURN_OPENERS = ("<|im_start|>", "<|start_header_id|>", "<|end_header_id|>", "<start_of_turn>")


def mark_turn_tokens_special(tokenizer: Any) -> list[str]:
    """Register the turn tokens the vocabulary already holds as special (same ids: the vocabulary and the
    tokenization of any text are unchanged). Returns the tokens it marked."""
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    missing = [t for t in (*TURN_OPENERS, *END_OF_TURN) if t in vocab and t not in special]
    if missing:
        size = len(tokenizer)
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
        if len(tokenizer) != size:  # the tokens were in the vocabulary: nothing may be appended to it
            raise AssertionError(f"marking {missing} special grew the vocabulary from {size} to {len(tokenizer)}")
    return missing
