"""`tuneforge data distill`: a hosted fine-tuned model's answers (the project's OpenAI stand-in) become a chat
dataset for an open model, after a cost estimate that stops before any request, the answer review and lint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import serving_standin
from tuneforge.cli import main
from tuneforge.openai_standin import StandIn

KEY = "sk-test-DISTILL-0c4f7e1a"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch):
    with serving_standin(monkeypatch, KEY) as s:
        yield s, os.environ["OPENAI_BASE_URL"]


def chat_calls(s: StandIn) -> int:
    return sum(1 for kind, _ in s.responses if kind == "ChatCompletion")


def test_distill_a_hosted_model_into_a_linted_chat_dataset(standin: tuple[StandIn, str], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    s, url = standin
    out = tmp_path / "outputs"
    assert main(["train", "recipe=openai-gpt4o-mini", "dataset=sample-chat", f"output_root={out}",
                 "backend.poll_interval_s=0.01", "backend.max_poll_interval_s=0.05"]) == 0
    run_dir = next(p for p in (out / "openai-gpt4o-mini").iterdir() if p.name != "plan")
    tuned = json.loads((run_dir / "summary.json").read_text())["fine_tuned_model"]
    capsys.readouterr()
    data = tmp_path / "distilled.jsonl"
    common = ["data", "distill", f"endpoint={url}", f"model={tuned}", "dataset=sample-chat", "max_examples=10",
              f"out={data}", "api_key_env=OPENAI_API_KEY"]
    before = chat_calls(s)
    # priced as a fine-tuned gpt-4o-mini: above a zero budget it stops before any request
    assert main([*common, "max_cost_usd=0"]) == 2
    got = capsys.readouterr()
    assert "OpenAI list price of a fine-tuned gpt-4o-mini" in got.out and "nothing was sent" in got.err
    assert chat_calls(s) == before and not data.exists()
    assert main([*common, "max_cost_usd=1"]) == 0
    assert chat_calls(s) == before + 10
    summary = json.loads(data.with_suffix(".json").read_text())
    assert summary["n"] == 10 and summary["kept"] + summary["rejected"] == 10 and summary["kept"] > 0
    assert summary["lint_exit_status"] < 2 and 0 < summary["estimate_usd"] < 1
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == summary["kept"] and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    rejected = [json.loads(line) for line in data.with_suffix(".rejected.jsonl").read_text().splitlines()]
    assert all(r["reasons"] for r in rejected)
    assert KEY not in data.read_text() and KEY not in capsys.readouterr().out


def test_distill_needs_a_price_for_an_unknown_remote_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "distill", "endpoint=https://example.invalid/v1", "model=mystery-7b",
                 "dataset=sample-chat", f"out={tmp_path / 'd.jsonl'}"]) == 2
    assert "give usd_per_1m_input= and usd_per_1m_output=" in capsys.readouterr().err
    assert not (tmp_path / "d.jsonl").exists()
