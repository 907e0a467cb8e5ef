"""End to end: `tuneforge data prepare dataset=dalat-tourism` (what `make data dataset=dalat-tourism` runs)
produces the splits, the quarantine and report.json, with token stats from the run's tokenizer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.paths import project_root


def test_data_prepare_dalat_tourism(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prepared"
    assert main(["data", "prepare", "dataset=dalat-tourism", "recipe=lora-tiny", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "quarantine.jsonl", "report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "clean" and report["exit_status"] == 0
    c = report["counts"]
    assert c["source_in"] == c["source_kept"] >= 100
    assert c["examples_kept"] == sum(report["splits"].values()) >= 1000
    for split, n in report["splits"].items():
        assert len((out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()) == n
    assert set(report["categories"]) == {"gia_ca", "dia_chi", "goi_y", "lich_trinh", "so_sanh"}
    tok = report["tokens"]
    assert tok["seq_len"] == 256 and tok["over_seq_len"] == 0  # lora-tiny's seq_len, the run's tokenizer
    assert tok["per_split"]["train"]["total"] > 0 and tok["per_example"]["p95"] <= 256
    assert report["cost"]["train_tokens"] == tok["per_split"]["train"]["total"]
    assert "gpt-4o-mini-2024-07-18" in text and "status        0 (clean)" in text
    assert "splits        train" in text

    # the counts in the report are the chat template's, for the run's tokenizer
    from tuneforge.config.compose import load_run_config
    from tuneforge.data.tokens import TokenCounter
    from tuneforge.models import load_tokenizer

    tokenizer = load_tokenizer(load_run_config(["recipe=lora-tiny"]))
    rows = [json.loads(x)["messages"] for x in (out / "val.jsonl").read_text(encoding="utf-8").splitlines()[:20]]
    tc = TokenCounter(tokenizer)
    assert tc.count(rows) == [tc.exact(r) for r in rows]

    # `plan` shows the prepared data's sizes and the OpenAI cost, from the cache (no torch, no work)
    from tuneforge.plan import make_plan

    notes = make_plan(load_run_config(["recipe=lora-tiny", "dataset=dalat-tourism"])).notes
    assert any(n.startswith("dataset dalat-tourism: train ") for n in notes), notes
    assert any("OpenAI fine-tuning cost" in n and "gpt-4o-mini-2024-07-18 $" in n for n in notes), notes


def test_make_data_runs_data_prepare() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "data", "dataset=dalat-tourism"], cwd=project_root(),
                         capture_output=True, text=True, check=True).stdout
    assert "tuneforge data prepare recipe=lora-gemma3 dataset=dalat-tourism" in dry


def test_data_lint_counts_tokens_with_the_runs_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    seed = project_root() / "data" / "dalat" / "seed.csv"
    assert main(["data", "lint", str(seed), "recipe=lora-tiny", "--max-tokens", "120", "--report", str(report)]) == 1
    out = capsys.readouterr().out
    assert "tokens        (tiny-llama, seq_len 256) all " in out
    assert f"{seed}:" in out and " D020 " in out  # the longest answers exceed a 120-token limit
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["tokens"]["max_tokens"] == 120 and data["tokens"]["over_max_tokens"] > 0
    assert data["cost"] is None and data["splits"] == {}
