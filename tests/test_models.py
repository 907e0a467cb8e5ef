"""The tiny offline model: built locally, cached, deterministic by seed; chat template marks assistant turns."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from tuneforge.models import build_tiny_model, tiny_model_key
from tuneforge.schema.run import TinyModelConfig


def _weights(d: Path) -> dict:
    return load_file(str(d / "model.safetensors"))


def test_tiny_model_is_deterministic_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TinyModelConfig(hidden_size=64, num_hidden_layers=1, vocab_size=600)
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "a"))
    a = build_tiny_model(cfg)
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(cfg) == a and (a / "model.safetensors").stat().st_mtime_ns == mtime  # cache hit
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "b"))
    b = build_tiny_model(cfg)
    assert a != b
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    # another seed is another model, under another cache key
    other = TinyModelConfig(hidden_size=64, num_hidden_layers=1, vocab_size=600, seed=1)
    assert tiny_model_key(other) != tiny_model_key(cfg)
    wc = _weights(build_tiny_model(other))
    assert not all((wa[k] == wc[k]).all() for k in wa)
    assert not list((tmp_path / "a" / "tiny-models").glob(".building-*")), "no half-built model left behind"


def test_chat_template_masks_everything_but_assistant_turns() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_tiny_model(TinyModelConfig()))
    out = tok.apply_chat_template(
        [{"role": "system", "content": "Bạn là trợ lý."}, {"role": "user", "content": "Đà Lạt ở đâu?"},
         {"role": "assistant", "content": "Dạ, Lâm Đồng."}],
        tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    answer = tok.decode([i for i, m in zip(ids, mask) if m])
    assert answer == "Dạ, Lâm Đồng.<|im_end|>"
    assert "Đà Lạt ở đâu?" in tok.decode(ids)
