"""Moving off OpenAI's fine-tuning, end to end against the project's OpenAI stand-in (no network, no key):

1. an OpenAI recipe trained on the stand-in -> its ``ft:`` model;
2. ``tuneforge data distill endpoint=<stand-in> model=<ft:...>`` -> a linted chat dataset;
3. a tiny open model trained on that dataset (``dataset.path=<file> dataset.format=chat``);
4. that run served by ``tuneforge serve`` on 127.0.0.1;
5. both models scored by the same ``tuneforge eval endpoint=`` on the same test questions (the OpenAI run's).

The command sequence is the README's (moving off OpenAI fine-tuning)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import serving_standin
from tuneforge.cli import main

pytest.importorskip("fastapi", reason="tuneforge serve needs the serving extra (fastapi, uvicorn)")

KEY = "sk-test-MOVE-OFF-7d21b9"


@pytest.mark.integration
def test_openai_run_distilled_into_an_open_model_both_scored_over_the_same_endpoint_eval(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.serve.server import start_server

    out = tmp_path / "outputs"
    with serving_standin(monkeypatch, KEY) as standin:
        url = os.environ["OPENAI_BASE_URL"]
        assert main(["train", "recipe=openai-gpt4o-mini", "dataset=sample-chat", f"output_root={out}",
                     "backend.poll_interval_s=0.01", "backend.max_poll_interval_s=0.05"]) == 0
        hosted = next(p for p in (out / "openai-gpt4o-mini").iterdir() if p.name != "plan")
        tuned = json.loads((hosted / "summary.json").read_text())["fine_tuned_model"]
        assert tuned.startswith("ft:")

        data = tmp_path / "distilled.jsonl"
        assert main(["data", "distill", f"endpoint={url}", f"model={tuned}", "dataset=sample-chat",
                     "max_examples=40", "max_cost_usd=1", f"out={data}", "api_key_env=OPENAI_API_KEY"]) == 0
        distilled = json.loads(data.with_suffix(".json").read_text())
        assert distilled["kept"] >= 10 and distilled["lint_exit_status"] < 2

        assert main(["train", "recipe=lora-tiny", f"dataset.path={data}", "dataset.format=chat",
                     "hparams.max_steps=3", "eval.max_new_tokens=8", f"output_root={out}"]) == 0
        open_run = next(p for p in (out / "lora-tiny").iterdir() if p.name != "plan")
        summary = json.loads((open_run / "summary.json").read_text())
        assert summary["steps"] == 3 and summary["config"]["dataset"]["path"] == str(data)

        hosted_eval = tmp_path / "eval-hosted.json"
        assert main(["eval", f"endpoint={url}", f"model={tuned}", f"run={hosted}", "eval.max_samples=4",
                     "eval.max_new_tokens=8", "api_key_env=OPENAI_API_KEY", f"out={hosted_eval}"]) == 0
        asked = sum(1 for kind, _ in standin.responses if kind == "ChatCompletion")

    server = start_server(open_run, tmp_path / "serve.log")
    try:
        open_eval = tmp_path / "eval-open.json"
        open_id = f"{open_run.parent.name}-{open_run.name}"
        assert main(["eval", f"endpoint={server.base_url}", f"model={open_id}", f"run={hosted}",
                     "eval.max_samples=4", "eval.max_new_tokens=8", f"out={open_eval}"]) == 0
    finally:
        assert server.stop() == 0
    printed = capsys.readouterr().out
    a, b = json.loads(hosted_eval.read_text()), json.loads(open_eval.read_text())
    # the same questions, the same decoding, the same checks: only the model differs
    assert [s["prompt"] for s in a["samples"]] == [s["prompt"] for s in b["samples"]] and a["n_examples"] == 4
    assert a["decoding"]["max_completion_tokens"] == b["decoding"]["max_completion_tokens"] == 8
    assert set(a["endpoint_metrics"]) == set(b["endpoint_metrics"]) and "usable_rate" in a["endpoint_metrics"]
    assert a["model"] == tuned and b["model"] == open_id and asked >= distilled["n"] + 4
    assert f"tuneforge eval: {tuned} at {url}" in printed and f"tuneforge eval: {open_id} at {server.base_url}" in printed
    for f in (data, hosted_eval, open_eval, *open_run.rglob("*.json")):
        assert KEY not in f.read_text(errors="replace"), f
