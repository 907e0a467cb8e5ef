"""Assistant-only loss for any chat template (labels cover exactly the assistant turns and their end-of-turn
token) and isolated packing (a packed row gives each example the logits it has alone)."""

from __future__ import annotations

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.data.masking import tokenize_with_role_mask
from tuneforge.models import load_model, load_tokenizer

CONVERSATION = [
    {"role": "system", "content": "Bạn là trợ lý du lịch Đà Lạt."},
    {"role": "user", "content": "Đà Lạt có biển không?"},
    {"role": "assistant", "content": "Dạ, Đà Lạt không có biển ạ. Biển gần nhất là Nha Trang."},
    {"role": "user", "content": "Còn hồ thì sao?"},
    {"role": "assistant", "content": "Dạ, hồ Xuân Hương nằm ngay trung tâm."},
]


def _trained_runs(tokenizer, out: dict) -> list[str]:
    runs, cur = [], []
    for tok, bit in zip(out["input_ids"], out["assistant_masks"]):
        if bit:
            cur.append(tok)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return [tokenizer.decode(r) for r in runs]


@pytest.mark.parametrize(("overrides", "end"), [
    (["model=smollm2-135m"], "<|im_end|>"),  # SmolLM2's own template: no {% generation %} markers
    (["model=gemma3-270m"], "<end_of_turn>"),  # Gemma's turns: system folded into the first user turn
    (["model=tiny-llama", "model.chat_template=chatml"], "<|im_end|>"),
    (["model=tiny-llama", "model.chat_template=llama3"], "<|eot_id|>"),
])
def test_labels_cover_exactly_the_assistant_turns(overrides: list[str], end: str) -> None:
    run = load_run_config(overrides)
    tok = load_tokenizer(run)
    out = tokenize_with_role_mask(tok, CONVERSATION)
    answers = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert _trained_runs(tok, out) == [a + end for a in answers]
    # everything else (system prompt, questions, role headers, the whitespace after a turn) is masked
    masked = tok.decode([t for t, b in zip(out["input_ids"], out["assistant_masks"]) if not b])
    assert "Đà Lạt có biển không?" in masked and "Bạn là trợ lý" in masked
    assert not any(a in masked for a in answers)


def test_truncation_keeps_masks_aligned() -> None:
    tok = load_tokenizer(load_run_config(["model=tiny-llama"]))
    full = tokenize_with_role_mask(tok, CONVERSATION)
    cut = tokenize_with_role_mask(tok, CONVERSATION, max_length=20)
    assert cut["input_ids"] == full["input_ids"][:20] and cut["assistant_masks"] == full["assistant_masks"][:20]


def test_packed_examples_are_isolated() -> None:
    """Two examples in one packed row (position ids reset, no attention mask) get exactly the logits they
    get alone: no attention across the boundary. transformers derives the block mask from position_ids when
    there is no attention mask and no KV cache, as in training (the native backend sets use_cache=False)."""
    import torch

    run = load_run_config(["model=tiny-llama"])
    tok, model = load_tokenizer(run), load_model(run).eval()
    a = tokenize_with_role_mask(tok, CONVERSATION[:3])["input_ids"]
    b = tokenize_with_role_mask(tok, CONVERSATION)["input_ids"]
    with torch.no_grad():
        alone_a = model(input_ids=torch.tensor([a]), use_cache=False).logits[0]
        alone_b = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
        packed = model(input_ids=torch.tensor([a + b]),
                       position_ids=torch.tensor([list(range(len(a))) + list(range(len(b)))]), use_cache=False).logits[0]
    torch.testing.assert_close(packed[: len(a)], alone_a, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[len(a):], alone_b, atol=1e-5, rtol=1e-4)
    # and the check can fail: without the position reset the second example sees the first one
    with torch.no_grad():
        leaky = model(input_ids=torch.tensor([a + b]), use_cache=False).logits[0]
    assert not torch.allclose(leaky[len(a):], alone_b, atol=1e-3)
