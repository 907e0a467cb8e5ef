"""dataset.rag_training: RAFT-style rows with passages (distractors included) in the prompt and answers
consistent with them; the test split untouched; a tiny model trains on them with its loss going down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.data.passages import COUNTERFACTUAL_KINDS, load_passages, value_keys
from tuneforge.data.prepare import prepare_splits
from tuneforge.errors import ConfigError

RAFT = ["dataset=dalat-tourism", "dataset.rag_training.enabled=true", "dataset.rag_training.share=0.6",
        "dataset.rag_training.counterfactual=0.5"]


def _rows(path: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.open(encoding="utf-8") if line.strip()]


def test_rows_carry_passages_and_answers_consistent_with_them() -> None:
    run = load_run_config(RAFT)
    plain = prepare_splits(load_run_config(["dataset=dalat-tourism"]).dataset)
    data = prepare_splits(run.dataset)
    assert data.dir != plain.dir  # the setting is part of the cache key
    rows, before = _rows(data.train), _rows(plain.train)
    assert len(rows) == len(before)
    head = "Thông tin tham khảo:\n"
    rag = [(b, r) for b, r in zip(before, rows) if r[-2]["content"].startswith(head)]
    assert 0.5 < len(rag) / len(rows) < 0.7
    kb = {p.text for p in load_passages(run.dataset)}
    changed = 0
    for b, r in rag:
        block, question = r[-2]["content"][len(head):].split("\n\nCâu hỏi: ")
        assert question.split("\n")[0] == b[-2]["content"]
        shown = [line[2:] for line in block.split("\n")]
        assert len(shown) == 3 and len(set(shown)) == 3
        assert sum(t not in kb for t in shown) <= 1  # at most the changed passage is not in the knowledge base
        answer = {k for k in value_keys(r[-1]["content"]) if k[1] in COUNTERFACTUAL_KINDS}
        assert answer <= value_keys(block)  # every price/distance/hour of the answer is in a passage shown
        if r[-1]["content"] != b[-1]["content"]:
            changed += 1
            assert any(t not in kb for t in shown)  # a changed answer comes with its changed passage
    assert changed > 20 and data.report["rag_training"]["counterfactual"] >= changed
    assert not any(head in m["content"] for r in _rows(data.test) for m in r)  # the test split is untouched


def test_no_training_answer_holds_a_value_the_faithfulness_measurement_will_ask_for() -> None:
    """The measured counterfactuals (variant 0) on the held-out questions are values no train/val row learned:
    a RAFT model can answer them only by reading the passage, not from memory."""
    from tuneforge.evaluation.faithfulness import build_cases, supporting_passage

    run = load_run_config([*RAFT[:2], "dataset.rag_training.share=1.0", "dataset.rag_training.counterfactual=1.0"])
    data = prepare_splits(run.dataset)
    passages = load_passages(run.dataset)
    cases = build_cases([r[-1]["content"] for r in _rows(data.test)], passages)
    assert len({c.passage_id for c in cases}) >= 5
    plain = prepare_splits(load_run_config(["dataset=dalat-tourism"]).dataset)
    assert data.report["rag_training"]["counterfactual"] > 300  # the rows do change values...
    measured = {c.passage_id: set(c.changed) - set(c.trained) for c in cases}
    checked = 0
    for path, before in ((data.train, plain.train), (data.val, plain.val)):
        for raft, row in zip(_rows(path), _rows(before), strict=True):  # same rows, same order
            gold = supporting_passage(row[-1]["content"], passages)
            if gold is not None and gold.id in measured:
                checked += 1
                # ...but never to the measured ones (before 2026-12-06, 4 of the 7 measured passages had RAFT
                # answers holding exactly their measured values)
                assert not measured[gold.id] <= value_keys(raft[-1]["content"]), (gold.id, raft[-1]["content"])
    assert checked >= 20


def test_rag_training_without_a_knowledge_base_is_refused() -> None:
    with pytest.raises(ConfigError, match="dataset.rag_training.enabled=true needs a knowledge base"):
        load_run_config(["dataset=sample-chat", "dataset.rag_training.enabled=true"])
    with pytest.raises(ConfigError, match=r"dataset.rag_training.share=1.5 must be in \[0, 1\]"):
        load_run_config([*RAFT, "dataset.rag_training.share=1.5"])


@pytest.mark.slow  # a few minutes on a shared 2-core CPU
def test_a_tiny_model_trains_on_the_rows_and_the_local_ladder_runs_on_it(tmp_path: Path) -> None:
    from tuneforge.train import train

    run = load_run_config(["recipe=lora-tiny", *RAFT, "hparams.max_steps=12", "optim.lr=3e-2", "hparams.seq_len=512",
                           f"output_root={tmp_path}"])
    summary = train(run, quiet=True)
    assert summary["last_loss"] < summary["first_loss"]
    # and the local ladder runs on it: five arms, the counterfactual questions of the two RAG arms
    from dataclasses import replace

    from tuneforge.evaluation.runner import evaluate_run

    cfg = replace(run.eval, ladder=True, max_samples=3, max_new_tokens=4, few_shot=1, probes=False)
    results = evaluate_run(Path(summary["run_dir"]), eval_config=cfg, quiet=True)
    ladder = {e["arm"]: e for e in results["ladder"]}
    assert list(ladder) == ["base", "base+few-shot", "base+rag", "finetuned", "finetuned+rag"]
    assert min(ladder["base+rag"]["prompt_tokens"], ladder["base+few-shot"]["prompt_tokens"]) > ladder["base"][
        "prompt_tokens"]
    assert ladder["finetuned+rag"]["prompt_tokens"] == ladder["base+rag"]["prompt_tokens"]  # the same prompts
    assert set(results["faithfulness"]) == {"base+rag", "finetuned+rag"}
    assert all(f["n"] == sum(f["counts"].values()) >= 1 for f in results["faithfulness"].values())
    assert results["ladder_verdict"] and all(e["seconds"] > 0 for e in results["ladder"])
