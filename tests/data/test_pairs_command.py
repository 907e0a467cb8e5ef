"""``tuneforge data pairs``: chosen = the reference answer; rejected = the sampled answer of a run's model that
fails the most checks, plus edits that each break one check; pairs from the train split only."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.train import train


def test_pairs_from_a_runs_samples_and_edits(tmp_path: Path, out_root: Path, capsys) -> None:
    sft = train(load_run_config(["recipe=lora-tiny", "dataset=sample-chat", "hparams.max_steps=2",
                                 "eval.max_new_tokens=12", "eval.batch_size=32", f"output_root={out_root}"]),
                quiet=True)
    out, held = tmp_path / "pairs.jsonl", tmp_path / "held.jsonl"
    assert main(["data", "pairs", "dataset=sample-chat", f"run={sft['run_dir']}", "samples=1",
                 f"out={out}", f"heldout={held}"]) == 0
    pairs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    sampled = [p for p in pairs if p["kind"].startswith("sample")]
    assert sampled and all(p["chosen"] != p["rejected"] for p in pairs)
    # a 2-step tiny model's answers fail a check (cut off, off topic, loops): the rejected side says why
    assert any(p["kind"] == "sample-fails-check" for p in sampled)
    assert {p["kind"] for p in pairs} >= {"wrong_fact", "sample-fails-check"}
    from tuneforge.data.prepare import prepare_splits

    data = prepare_splits(load_run_config(["dataset=sample-chat"]).dataset)
    train_answers = {json.loads(x)["messages"][-1]["content"] for x in Path(data.train).read_text().splitlines()}
    assert all(p["chosen"] in train_answers for p in pairs)
    test_answers = {json.loads(x)["messages"][-1]["content"] for x in Path(data.test).read_text().splitlines()}
    assert all(json.loads(x)["chosen"] in test_answers for x in held.read_text().splitlines())
    assert "pairs from" in capsys.readouterr().out
