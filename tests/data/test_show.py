"""`tuneforge data show`: examples through the run's chat template, trained tokens marked apart."""

from __future__ import annotations

import json
import re

import pytest

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.data.show import CLOSE, GREEN, OPEN, show_examples


def _first_train_example(run) -> list[dict]:
    from tuneforge.data.prepare import prepare_splits

    with open(prepare_splits(run.dataset).train, encoding="utf-8") as f:
        return json.loads(f.readline())["messages"]


def test_only_the_assistant_answer_is_marked_trained(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "show", "recipe=lora-tiny", "--n", "2", "--color", "never"]) == 0
    out = capsys.readouterr().out
    run = load_run_config(["recipe=lora-tiny"])
    messages = _first_train_example(run)
    answer = next(m["content"] for m in messages if m["role"] == "assistant")
    first = out.split("--- train example 2")[0].split("\n", 1)[1]  # example 1, without the legend line
    assert re.findall(r"\[\[(.*?)\]\]", first, re.S) == [answer + "<|im_end|>"]
    assert messages[-2]["content"] in first and f"{OPEN}{messages[-2]['content']}" not in first  # prompt masked
    counts = re.search(r"(\d+) tokens = (\d+) trained \+ (\d+) masked", first)
    total, trained, masked = map(int, counts.groups())
    assert total == trained + masked and 0 < trained < total
    assert out.count("--- train example") == 2 and "assistant turns only" in out


def test_cut_tokens_colour_and_whole_sequence_mode() -> None:
    run = load_run_config(["recipe=lora-tiny", "hparams.seq_len=40"])
    text = show_examples(run, n=1, color=True)
    assert "<<cut: " in text and "hparams.seq_len=40" in text and "+ " in text.split("\n")[1]
    from tuneforge.backends.registry import get_backend

    run_all = load_run_config(["recipe=lora-tiny", "backend.assistant_only_loss=false"])
    whole = show_examples(run_all, n=1, assistant_only=get_backend("native").loss_mask(run_all) == "assistant-only")
    body = whole.split("\n", 2)[2]
    assert body.startswith(OPEN) and body.rstrip().endswith(CLOSE) and "every token" in whole
    coloured = show_examples(load_run_config(["recipe=lora-tiny"]), n=1, color=True)
    assert GREEN in coloured and OPEN not in coloured.split("\n", 2)[2]


def test_prepare_without_a_reachable_tokenizer_still_prepares(capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the gated Llama tokenizer cannot be had here
    rc = main(["data", "prepare", "recipe=qlora-llama"])
    out = capsys.readouterr().out
    assert rc in (0, 1) and "no token counts" in out and "splits" in out
