"""Augmentation rules, grouped deterministic split, fact guard, cache keys, stats and cost."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.data.files import chat, lint_config, write_lines
from tuneforge.config.compose import load_run_config
from tuneforge.data.augment import TemplateAugmenter, as_question, strip_numbering
from tuneforge.data.pipeline import run_pipeline
from tuneforge.data.prepare import data_key, prepare_splits
from tuneforge.data.split import TEST, TRAIN, VAL, assign_splits
from tuneforge.data.stats import OPENAI_TRAINING_PRICES, openai_cost, packing_efficiency, padding_waste
from tuneforge.data.tokens import TokenCounter
from tuneforge.errors import ConfigError, DataError
from tuneforge.paths import project_root
from tuneforge.schema.dataset import AugmentConfig, DatasetConfig, SplitConfig

TEMPLATES = ["Xin hỏi, {question}", "Ê ad ơi, {question}", "Tư vấn giúp mình: {question}",
             "Anh/chị cho em hỏi {question} ạ", "Mình sắp đi. {Question}", "{question}"]


@pytest.fixture(scope="module")
def dalat() -> DatasetConfig:
    return load_run_config(["dataset=dalat-tourism"]).dataset


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


# --- augmentation ---------------------------------------------------------------------------------------


def test_question_cleanup() -> None:
    assert strip_numbering("1. Đà Lạt ở đâu?") == "Đà Lạt ở đâu?"
    assert strip_numbering("2) giá vé?") == "giá vé?"
    assert strip_numbering("Câu 3: giá vé?") == "giá vé?"
    assert strip_numbering("- giá vé?") == "giá vé?"
    assert strip_numbering("2 ngày 1 đêm đi đâu?") == "2 ngày 1 đêm đi đâu?"  # a count, not numbering
    assert strip_numbering("1.500 m là độ cao nào?") == "1.500 m là độ cao nào?"
    assert as_question("giá vé bao nhiêu .") == "Giá vé bao nhiêu?"
    assert as_question("  đi  đâu??") == "Đi đâu?"


def test_augmentation_rules() -> None:
    cfg = AugmentConfig(method="templates", templates=TEMPLATES, variants=5, seed=3, proper_nouns=["Đà Lạt"])
    aug = TemplateAugmenter(cfg)
    out = aug.expand("3. Giá vé cáp treo bao nhiêu", "k")
    assert out[0] == "Giá vé cáp treo bao nhiêu?"  # the original, cleaned
    assert len(out) == 6 and len({q.lower() for q in out}) == 6  # "{question}" alone restates it: skipped
    assert "Xin hỏi, giá vé cáp treo bao nhiêu?" in out  # inner question lower-cased
    assert "Anh/chị cho em hỏi giá vé cáp treo bao nhiêu ạ?" in out
    assert "Mình sắp đi. Giá vé cáp treo bao nhiêu?" in out  # {Question} keeps the capital
    for q in out:
        assert q[0].isupper() and q.endswith("?") and not q.endswith("??") and "3." not in q
    # proper nouns keep their capital inside a template
    assert "Xin hỏi, Đà Lạt có biển không?" in aug.expand("Đà Lạt có biển không?", "k2")
    # deterministic for a seed, different order for another seed
    assert aug.expand("Giá vé?", "k") == TemplateAugmenter(cfg).expand("Giá vé?", "k")
    other = TemplateAugmenter(dataclasses.replace(cfg, seed=4))
    assert [aug.expand(f"câu {i}", f"k{i}") for i in range(5)] != [other.expand(f"câu {i}", f"k{i}") for i in range(5)]


def test_augmented_examples_carry_system_prompt_and_answer(tmp_path: Path) -> None:
    src = tmp_path / "seed.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer", "category"])
        for i in range(12):
            w.writerow([f"{i + 1}. Câu hỏi số {i}", f"Dạ, trả lời {i}.", "goi_y"])
    ds = DatasetConfig(name="t", path=str(src), format="csv_qa", system_prompt="Bạn là trợ lý.",
                       augment=AugmentConfig(method="templates", templates=TEMPLATES, variants=4, seed=1))
    out = tmp_path / "out"
    result = run_pipeline(ds, src, out)
    assert result.counts["examples_generated"] == 12 * 5 == result.counts["examples_kept"]
    rows = [r for s in ("train", "val", "test") for r in _rows(out / f"{s}.jsonl")]
    assert len(rows) == 60
    for r in rows:
        system, user, answer = r["messages"]
        assert system == {"role": "system", "content": "Bạn là trợ lý."}
        assert user["content"][0].isupper() and user["content"].endswith("?")
        assert not re.search(r"\d+\. ", user["content"])  # the seed's numbering is gone
        assert answer["content"].startswith("Dạ, trả lời")


# --- split ----------------------------------------------------------------------------------------------


def test_split_is_grouped_and_deterministic(tmp_path: Path, dalat: DatasetConfig) -> None:
    src = project_root() / dalat.path
    out1, out2 = tmp_path / "a", tmp_path / "b"
    r1 = run_pipeline(dalat, src, out1)
    run_pipeline(dalat, src, out2)
    for s in ("train", "val", "test"):
        assert (out1 / f"{s}.jsonl").read_bytes() == (out2 / f"{s}.jsonl").read_bytes()
    # each source pair has one answer: no answer (= no source pair) appears in two splits
    answers = {s: {r["messages"][-1]["content"] for r in _rows(out1 / f"{s}.jsonl")} for s in ("train", "val", "test")}
    assert not answers["train"] & answers["val"] and not answers["train"] & answers["test"]
    assert not answers["val"] & answers["test"]
    n = sum(r1.sizes.values())
    assert 1150 <= n <= 1350 and r1.sizes["val"] >= 0.08 * n and r1.sizes["test"] >= 0.08 * n
    assert r1.groups == {s: len(answers[s]) for s in answers}


def test_split_does_not_depend_on_row_order() -> None:
    groups = np.repeat(np.arange(200, dtype=np.uint64) * np.uint64(7919), 5)
    cfg = SplitConfig(seed=11)
    a = assign_splits(groups, cfg)
    perm = np.random.default_rng(0).permutation(groups.size)
    b = assign_splits(groups[perm], cfg)
    assert (a[perm] == b).all()
    counts = np.bincount(a, minlength=3)
    assert counts[TRAIN] + counts[VAL] + counts[TEST] == 1000
    assert 95 <= counts[VAL] <= 105 and 95 <= counts[TEST] <= 105
    assert (assign_splits(groups, SplitConfig(seed=12)) != a).any()


# --- fact guard -----------------------------------------------------------------------------------------


def test_fact_guard_catches_a_planted_wrong_claim(tmp_path: Path, dalat: DatasetConfig) -> None:
    seed = (project_root() / dalat.path).read_text(encoding="utf-8")
    planted = [("Đà Lạt có biển không?", "Dạ có ạ, Đà Lạt có bãi biển rất đẹp để tắm.", "beach"),
               ("Đà Lạt ở tỉnh nào?", "Dạ, Đà Lạt thuộc tỉnh Khánh Hòa.", "wrong-province"),
               ("Thời tiết Đà Lạt ra sao?", "Dạ, Đà Lạt nóng quanh năm, trung bình 30°C.", "hot-climate")]
    src = tmp_path / "seed.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        f.write(seed)
        csv.writer(f, lineterminator="\n").writerows([(q, a, "goi_y") for q, a, _ in planted])
    first_planted = seed.count("\n") + 1
    ds = dataclasses.replace(dalat, path=str(src))
    out = tmp_path / "out"
    result = run_pipeline(ds, src, out)
    hits = [f for f in result.log.sorted_items() if f.rule == "D070"]
    assert sorted({f.line for f in hits}) == [first_planted, first_planted + 1, first_planted + 2]
    assert any("[dalat-has-sea]" in f.message for f in hits)
    assert any("[wrong-province]" in f.message for f in hits)
    assert any("[hot-climate]" in f.message for f in hits)
    assert result.counts["source_rejected"] == 3 and result.exit_status == 2
    q = _rows(out / "quarantine.jsonl")
    assert {r["line"] for r in q} == {first_planted, first_planted + 1, first_planted + 2}
    served = " ".join(r["messages"][-1]["content"] for s in ("train", "val", "test") for r in _rows(out / f"{s}.jsonl"))
    assert "bãi biển rất đẹp" not in served and "Khánh Hòa" not in served


def test_dalat_seed_is_clean_balanced_and_states_the_foundational_facts(dalat: DatasetConfig) -> None:
    src = project_root() / dalat.path
    rows = list(csv.DictReader(src.open(encoding="utf-8")))
    assert 120 <= len(rows) <= 140
    cats = {c: sum(r["category"] == c for r in rows) for c in dalat.lint.categories}
    assert min(cats.values()) >= 20 and max(cats.values()) <= 1.2 * min(cats.values())
    assert all(r["answer"].startswith("Dạ") for r in rows)  # the house style
    text = " ".join(r["answer"] for r in rows)
    for fact in ("Lâm Đồng", "Tây Nguyên", "cao nguyên Lâm Viên", "1.500 m", "không có biển", "Liên Khương",
                 "khoảng 30 km", "Langbiang", "Datanla", "hồ Tuyền Lâm", "Ga Đà Lạt", "Dinh Bảo Đại", "chợ Đà Lạt"):
        assert fact in text, fact
    prices = [r["answer"] for r in rows if r["category"] == "gia_ca"]
    assert all("khoảng" in a and "tham khảo" in a for a in prices)


# --- config, cache, stats -------------------------------------------------------------------------------


def test_bad_dataset_config_fails_at_compose_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"dataset.split: train\+val\+test = 1.2 must be 1"):
        load_run_config(["dataset.split.val=0.3"])
    with pytest.raises(ConfigError, match=r"dataset.format='xml' is not valid; choose one of: chat, alpaca"):
        load_run_config(["dataset.format=xml"])


def test_cache_key_follows_source_content_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    src = write_lines(tmp_path / "d.jsonl", [chat(f"hỏi {i}", f"đáp {i}") for i in range(20)])
    ds = lint_config(src, min_error=10, min_warning=10)
    first = prepare_splits(ds)
    assert prepare_splits(ds).dir == first.dir  # cached
    assert data_key(dataclasses.replace(ds, system_prompt="S")) != data_key(ds)
    write_lines(src, [chat(f"hỏi {i}", f"đáp mới {i}") for i in range(20)])
    second = prepare_splits(ds)
    assert second.dir != first.dir  # an edited source is never served stale
    assert "đáp mới" in second.train.read_text(encoding="utf-8")
    assert sum(second.sizes.values()) == 20
    write_lines(src, [chat(f"hỏi {i}", f"đáp {i}") for i in range(5)])
    with pytest.raises(DataError, match="5 examples kept, at least 10 needed"):
        prepare_splits(ds)


def test_token_counter_matches_the_chat_template(word_tokenizer: Any) -> None:
    tc = TokenCounter(word_tokenizer)
    convs = [chat("a b c", "d e")["messages"], chat("x", "y z w", system="s t")["messages"],
             [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
              {"role": "user", "content": "c d"}, {"role": "assistant", "content": "e"}]]
    assert tc.fast and tc.count(convs) == [tc.exact(c) for c in convs] == [11, 15, 17]


def test_token_counting_in_worker_processes_matches_in_process(word_tokenizer: Any) -> None:
    texts = [" ".join(["chữ"] * (i % 17 + 1)) for i in range(500)]
    with TokenCounter(word_tokenizer, processes=2) as workers:
        assert workers.content_lengths(texts) == TokenCounter(word_tokenizer).content_lengths(texts)
        assert workers.worker_peak_mb > 0


def test_large_split_draws_per_group() -> None:
    from tuneforge.data.split import EXACT_LIMIT

    groups = np.repeat(np.arange(EXACT_LIMIT // 2, dtype=np.uint64), 3)  # 300k examples in 100k groups
    a = assign_splits(groups, SplitConfig(seed=5))
    shares = np.bincount(a, minlength=3) / a.size
    assert abs(shares[TRAIN] - 0.8) < 0.01 and abs(shares[VAL] - 0.1) < 0.01 and abs(shares[TEST] - 0.1) < 0.01
    per_group = a.reshape(-1, 3)
    assert (per_group == per_group[:, :1]).all()  # a group's examples share a split
    assert (assign_splits(groups, SplitConfig(seed=5)) == a).all()


def test_padding_packing_and_cost() -> None:
    lengths = np.array([10, 10, 10, 10, 20, 20, 20, 20])
    assert padding_waste(np.array([10, 10, 10, 10]), 64, 2) == 0.0
    assert 0 < padding_waste(lengths, 64, 4) < 0.5
    assert packing_efficiency(np.array([32, 32, 32, 32]), 64) == 1.0
    assert packing_efficiency(np.array([40, 40]), 64) == pytest.approx(80 / 128)
    assert packing_efficiency(np.array([100]), 64) == 1.0  # truncated to seq_len
    cost = openai_cost(1_000_000, 3)
    assert OPENAI_TRAINING_PRICES["as_of"] == "2024-08-06"
    assert cost["usd"] == {"gpt-4o-mini-2024-07-18": 9.0, "gpt-4o-2024-08-06": 75.0, "gpt-3.5-turbo": 24.0}
