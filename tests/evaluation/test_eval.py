"""`tuneforge eval` on a tiny trained run: eval.json holds every metric for base and fine-tuned, the
fine-tuned test loss is below the base's, the report files hold the table; the metric and masking helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.evaluation.shared_run import SharedRun, trained_lora_run
from tuneforge.cli import main
from tuneforge.evaluation.metrics import METRICS, generation_metrics


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return trained_lora_run(tmp_path_factory)


def test_eval_after_training_has_every_metric_and_finetuned_beats_base(lora_run: SharedRun) -> None:
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.rundir import read_config

    results = json.loads((lora_run.run_dir / "eval.json").read_text())
    for side in ("base", "finetuned", "delta"):
        for m in METRICS:  # style_rate only where the dataset declares style_checks
            if m.key == "style_rate" and not results["style"]["base"]["checks"]:
                continue
            assert math.isfinite(results[side][m.key]), (side, m.key)
    base, tuned = results["base"], results["finetuned"]
    assert tuned["loss"] < base["loss"] - 0.05, (base, tuned)
    assert results["finetuned"]["perplexity"] == pytest.approx(math.exp(results["finetuned"]["loss"]))
    assert results["base"]["loss_tokens"] == results["finetuned"]["loss_tokens"] > 0
    test_size = prepare_splits(read_config(lora_run.run_dir).dataset).sizes["test"]
    assert results["n_examples"] == len(results["samples"]) == min(test_size, 64)
    assert results["decoding"]["max_new_tokens"] == 16 and results["decoding"]["do_sample"] is False
    sample = results["samples"][0]
    assert sample["prompt"] and sample["reference"] and set(sample) >= {"base", "finetuned", "system"}
    # generation stopped within the budget for both models
    assert 0 < results["finetuned"]["avg_new_tokens"] <= 16


def test_report_files_exist_and_hold_the_table(lora_run: SharedRun) -> None:
    d = lora_run.run_dir
    md = (d / "report.md").read_text()
    assert "| Metric | Base | Fine-tuned | Difference |" in md
    html = (d / "report.html").read_text()
    assert '<table class="metrics">' in html
    for m in METRICS:
        if m.key == "style_rate":  # sample-chat declares no style checks: no row for them
            continue
        assert m.label in md and m.label in html, m.label
    results = json.loads((d / "eval.json").read_text())
    assert f"{results['finetuned']['loss']:.4f}" in html and f"{results['base']['loss']:.4f}" in md
    assert (d / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # self-contained: the curve is inline, nothing is fetched
    assert 'src="data:image/png;base64,' in html
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert "Reference" in html and results["samples"][0]["reference"][:20] in html.replace("&#x27;", "'")


def test_eval_command_with_overrides_rewrites_eval_json(lora_run: SharedRun, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    run_dir = lora_run.copy(tmp_path / "run")
    (run_dir / "eval.json").unlink()
    rc = main(["eval", f"run={run_dir}", "eval.max_samples=2", "eval.max_new_tokens=4", "eval.batch_size=2"])
    assert rc == 0
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["n_examples"] == 2 and results["decoding"]["max_new_tokens"] == 4
    assert results["finetuned"]["avg_new_tokens"] <= 4
    out = capsys.readouterr().out
    assert "Test loss (assistant tokens)" in out and "report.html" in out


@pytest.mark.parametrize(("args", "message"), [
    (["eval.max_sample=3"], "unknown key 'eval.max_sample' (did you mean 'eval.max_samples'?)"),
    (["eval.max_samples=0"], "eval.max_samples=0 must be >= 1"),
    (["eval.top_p=abc"], "eval.top_p"),
    (["eval.repetition_penalty=0"], "eval.repetition_penalty=0.0 must be > 0"),
    ([], "run=<run_dir> is required"),
])
def test_eval_command_rejects_bad_arguments(lora_run: SharedRun, args: list[str], message: str,
                                            capsys: pytest.CaptureFixture) -> None:
    run_arg = [f"run={lora_run.run_dir}"] if args else []
    assert main(["eval", *run_arg, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_refuses_a_directory_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", f"run={tmp_path}"]) == 2
    assert "not a run directory (no config.yaml)" in capsys.readouterr().err


def test_generation_metrics_scale_and_unicode() -> None:
    same = generation_metrics(["Đà Lạt ở Lâm Đồng."], ["Đà Lạt ở Lâm Đồng."])
    assert same == pytest.approx({"exact_match": 100.0, "bleu": 100.0, "chrf": 100.0, "rouge_l": 100.0})
    # ROUGE-L keeps Vietnamese words (rouge-score's default tokenizer would drop every accented letter)
    partial = generation_metrics(["Đà Lạt rất đẹp"], ["Đà Lạt ở Lâm Đồng"])
    assert 0 < partial["rouge_l"] < 100 and partial["exact_match"] == 0
    empty = generation_metrics([""], ["Đà Lạt"])
    assert empty["rouge_l"] == 0 and empty["bleu"] == 0


def test_loss_mask_covers_assistant_tokens_with_or_without_generation_markers(lora_run: SharedRun) -> None:
    from tuneforge.evaluation.artifacts import load_run_tokenizer, open_run
    from tuneforge.evaluation.examples import assistant_token_mask

    tok = load_run_tokenizer(open_run(lora_run.run_dir))
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hỏi một"},
            {"role": "assistant", "content": "Đáp một"}, {"role": "user", "content": "Hỏi hai"},
            {"role": "assistant", "content": "Đáp hai"}]
    ids, mask = assistant_token_mask(tok, msgs)
    answer = tok.decode([i for i, m in zip(ids, mask) if m])
    assert answer == "Đáp một<|im_end|>Đáp hai<|im_end|>"
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert assistant_token_mask(tok, msgs) == (ids, mask)


def test_a_budget_shorter_than_the_references_is_named(caplog: pytest.LogCaptureFixture) -> None:
    """ROUGE-L and chrF compare with the whole reference: a max_new_tokens that cuts answers short is warned
    about, with the budget that covers every reference."""
    import logging

    from transformers import AutoTokenizer

    from tuneforge.evaluation.examples import EvalExample
    from tuneforge.evaluation.runner import warn_if_references_cut
    from tuneforge.models import build_tiny_model
    from tuneforge.schema.run import TinyModelConfig

    tok = AutoTokenizer.from_pretrained(build_tiny_model(TinyModelConfig()))
    refs = ["Dạ, ngắn.", "Dạ, " + "hồ Xuân Hương nằm ở trung tâm thành phố, " * 6]
    examples = [EvalExample([{"role": "user", "content": "?"}, {"role": "assistant", "content": r}], r)
                for r in refs]
    longest = len(tok(refs[1], add_special_tokens=False)["input_ids"])
    with caplog.at_level(logging.WARNING, logger="tuneforge.evaluation.runner"):
        assert warn_if_references_cut(tok, examples, longest) == longest
    assert not caplog.records, "a budget that covers every reference is not warned about"
    with caplog.at_level(logging.WARNING, logger="tuneforge.evaluation.runner"):
        warn_if_references_cut(tok, examples, 8)
    (record,) = caplog.records
    assert "eval.max_new_tokens=8 is shorter than 1 of the 2 reference answers" in record.getMessage()
    assert f"eval.max_new_tokens={longest + 8} covers them all" in record.getMessage()


def test_probes_are_answered_reviewed_and_a_noise_model_is_never_called_better(lora_run: SharedRun,
                                                                               tmp_path: Path) -> None:
    """The tiny random model's test loss falls with training, and its answers are still noise: with the
    dataset's probes added to the run, eval answers them with both models, records usable rates, and the
    verdict says NOT USABLE instead of counting the metrics that improved."""
    import yaml

    run_dir = lora_run.copy(tmp_path / "run")
    probes = tmp_path / "probes.csv"
    probes.write_text("question,category,trap,required,required_message\n"
                      "Is there a beach in Da Lat?,dia_chi,yes,no (beach|sea),Da Lat has no sea\n"
                      "What should I pack?,goi_y,no,,\n", encoding="utf-8")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["dataset"]["probes"] = str(probes)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    rc = main(["eval", f"run={run_dir}", "eval.max_samples=2", "eval.max_new_tokens=8", "eval.batch_size=8"])
    assert rc == 0
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["finetuned"]["loss"] < results["base"]["loss"]
    p = results["probes"]
    assert p["n"] == 2 and p["n_traps"] == 1
    assert {"usable_rate", "n_usable", "traps_right", "forbidden_claims"} <= set(p["finetuned"])
    assert [s["question"] for s in p["samples"]] == ["Is there a beach in Da Lat?", "What should I pack?"]
    assert all(s["finetuned_reasons"] for s in p["samples"])  # noise: every answer has a reason
    assert "usable_rate" in results["base"] and "usable_rate" in results["finetuned"]
    report = (run_dir / "report.md").read_text()
    assert report.splitlines()[2].startswith("**NOT USABLE")
    assert "answers a reader would reject" in report and "## Probe questions (2, 1 traps" in report
