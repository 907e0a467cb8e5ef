"""Fixtures for the data tests: a tiny word-level tokenizer (one token per word, predictable counts) built in
memory with tokenizers + transformers, so token rules are tested without building the tiny model."""

from __future__ import annotations

from typing import Any

import pytest

from tests.data.files import CHATML


@pytest.fixture(scope="session")
def word_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system", "\n"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHATML
    return fast
