"""Issue 11 §4: a per-category breakdown. The prepared splits keep each row's category beside them
(categories.json, line-aligned), eval's test examples carry it, and eval.json / the reports break the
metrics down by it."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

from tuneforge.config.compose import load_run_config
from tuneforge.data.pipeline import split_categories
from tuneforge.data.prepare import prepare_splits
from tuneforge.evaluation.examples import EvalExample, load_test_examples
from tuneforge.evaluation.report import render_html, render_markdown
from tuneforge.evaluation.results import category_breakdown


def test_prepared_splits_keep_each_rows_category() -> None:
    run = load_run_config(["recipe=lora-tiny", "dataset=dalat-tourism"])
    data = prepare_splits(run.dataset)
    for split in (data.train, data.val, data.test):
        cats = split_categories(Path(split))
        lines = Path(split).read_text(encoding="utf-8").splitlines()
        assert cats is not None and len(cats) == len(lines)
        assert set(cats) <= set(run.dataset.lint.categories)
    # line-aligned: a row and its category come from the same source question (price answers are gia_ca)
    test_cats = split_categories(Path(data.test))
    for line, cat in zip(Path(data.test).read_text(encoding="utf-8").splitlines(), test_cats):
        answer = json.loads(line)["messages"][-1]["content"]
        if cat == "gia_ca":
            assert "đồng" in answer or "đ" in answer, answer
    by_split = data.report.get("categories") or {}
    if by_split:  # the report counts the same thing
        assert Counter(test_cats) == {c: n["test"] for c, n in by_split.items() if n["test"]}


def test_eval_examples_carry_the_category() -> None:
    run = load_run_config(["recipe=lora-tiny", "dataset=dalat-tourism"])
    examples = load_test_examples(run, 12)
    assert all(ex.category in run.dataset.lint.categories for ex in examples)
    assert len({ex.category for ex in examples}) >= 3  # round-robin over questions spans categories


def _results(run, examples, answers) -> dict:
    by_cat = category_breakdown(run, examples, answers)
    return {"name": "x", "run_dir": "/r", "base_model": "b", "finetuned_model": "f", "method": "lora",
            "backend": "native", "n_examples": len(examples), "dataset": "dalat-tourism",
            "decoding": {"max_new_tokens": 8, "do_sample": False, "report_samples": 0},
            "hyperparameters": {}, "base": {"loss": 2.0}, "finetuned": {"loss": 1.0},
            "delta": {"loss": -1.0}, "improved": ["loss"], "style": {}, "samples": [],
            "by_category": by_cat}


def test_breakdown_scores_each_category_on_its_own_examples() -> None:
    run = load_run_config(["recipe=lora-tiny", "dataset=dalat-tourism"])
    ref_a, ref_b = "Dạ, vé khoảng 50.000 đồng.", "Dạ, hồ Xuân Hương ở trung tâm."
    examples = [EvalExample([{"role": "user", "content": "q"}, {"role": "assistant", "content": r}], r, c)
                for r, c in [(ref_a, "gia_ca"), (ref_a, "gia_ca"), (ref_b, "dia_chi")]]
    answers = {"base": ["Vé rẻ.", "Vé rẻ.", "Hồ ở xa."],
               "finetuned": [ref_a, ref_a, "Đà Lạt có biển đẹp."]}  # the last one is a forbidden claim
    by_cat = category_breakdown(run, examples, answers)
    assert set(by_cat) == {"gia_ca", "dia_chi"} and by_cat["gia_ca"]["n"] == 2
    assert by_cat["gia_ca"]["finetuned"]["rouge_l"] == 100.0 and by_cat["gia_ca"]["base"]["rouge_l"] < 50
    assert by_cat["gia_ca"]["finetuned"]["style_rate"] == 100.0 and by_cat["gia_ca"]["base"]["style_rate"] == 0
    assert by_cat["dia_chi"]["finetuned"]["forbidden_claims"] == 1
    assert by_cat["gia_ca"]["finetuned"]["forbidden_claims"] == 0
    res = _results(run, examples, answers)
    md, page = render_markdown(res, has_curve=False), render_html(res, None)
    assert "## By category" in md and "| gia_ca | 2 |" in md
    assert "By category" in page and "dia_chi" in page
    # no categories: no section
    plain = [EvalExample(e.messages, e.reference) for e in examples]
    assert category_breakdown(run, plain, answers) == {}
    assert "By category" not in render_markdown(_results(run, plain, answers), has_curve=False)


def test_validation_pass_has_a_live_line() -> None:
    from types import SimpleNamespace

    from tuneforge.console import TrainProgressCallback

    out = io.StringIO()
    cb = TrainProgressCallback("run")
    state = SimpleNamespace(is_world_process_zero=True, global_step=3)
    import tuneforge.console as console

    real = console.ProgressLine
    console.ProgressLine = lambda label, total: real(label, total, out=out, every_s=0)  # noqa: E731
    try:
        for _ in range(3):
            cb.on_prediction_step(None, state, None, eval_dataloader=[0, 1, 2])
        cb.on_evaluate(None, state, None)
    finally:
        console.ProgressLine = real
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("run eval 1/3") and lines[-1].startswith("run eval 3/3"), lines
    assert cb.eval_line is None
