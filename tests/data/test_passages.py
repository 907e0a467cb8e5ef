"""The knowledge base (dataset.passages) and its lint: empty, duplicate and forbidden passages, and held-out
answers whose checkable values no passage holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.data.passages import (
    Passage,
    load_passages,
    passage_problems,
    reference_support,
    value_keys,
    values,
)
from tuneforge.data.passages_lint import lint_knowledge_base
from tuneforge.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def dalat():
    return load_run_config(["dataset=dalat-tourism"]).dataset


def test_values_read_prices_ranges_distances_hours() -> None:
    text = "Vé khoảng 15.000–30.000 đồng/người, cách trung tâm 5 km, mở cửa 7 giờ; bánh 25.000đ; cao 1.500 m"
    assert value_keys(text) == {("15000", "price"), ("30000", "price"), ("5", "distance"), ("7", "hour"),
                                ("25000", "price"), ("1500", "height")}
    assert [v.written for v in values("khoảng 60.000–100.000 đồng")] == ["60.000", "100.000"]
    assert value_keys("Ngày 1–3: đi dạo") == set()  # a number without a unit is not a checkable value


def test_the_dalat_knowledge_base_is_clean_and_supports_every_test_answer(dalat, capsys) -> None:
    passages = load_passages(dalat)
    assert len(passages) > 100 and all(p.text and p.id for p in passages)
    assert any("không có biển" in p.text for p in passages)  # the foundational fact is in the knowledge base
    problems, support = lint_knowledge_base(dalat)
    assert problems == []
    judged = [s for s in support if s.values]
    assert judged and all(s.supported for s in judged)
    assert main(["data", "passages", "dataset=dalat-tourism"]) == 0
    assert "0 problems" in capsys.readouterr().out


def test_lint_finds_empty_duplicate_and_forbidden_passages(dalat, tmp_path: Path) -> None:
    f = tmp_path / "kb.csv"
    f.write_text("id,category,passage\n"
                 "a,gia_ca,Vé vào Crazy House khoảng 60.000–100.000 đồng/người lớn.\n"
                 "b,gia_ca,\n"
                 "a,dia_chi,Hồ Xuân Hương nằm ngay trung tâm thành phố.\n"
                 "c,gia_ca,\"vé vào  Crazy House khoảng 60.000–100.000 đồng/người lớn\"\n"
                 "d,goi_y,Bãi biển Đà Lạt rất đẹp vào mùa hè.\n"
                 "e,co_ban,Đà Lạt không có biển; biển gần nhất là Nha Trang.\n", encoding="utf-8")
    ds = dataclasses.replace(dalat, passages=str(f))
    found = list(passage_problems(ds, load_passages(ds, lenient=True), f))
    assert [p.split(": ", 2)[:2] for p in found] == [[f"{f}:3", "P001 empty passage (id b)"],
                                                     [f"{f}:4", "P002 duplicate id 'a' (first on line 2)"],
                                                     [f"{f}:5", "P003 duplicate passage 'c'"],
                                                     [f"{f}:6", "P004 passage 'd' states a forbidden claim [beach-in-dalat]"]]


def test_support_names_the_unsupported_answer_and_its_missing_values() -> None:
    kb = [Passage("p1", "gia_ca", "Vé khoảng 60.000–100.000 đồng, cách trung tâm 5 km.", 2)]
    refs = [("test.jsonl", 3, "Dạ, vé khoảng 60.000–100.000 đồng."),
            ("test.jsonl", 7, "Dạ, vé khoảng 80.000 đồng, cách 5 km."),
            ("test.jsonl", 9, "Dạ, nên đi buổi sáng.")]
    ok, bad, unjudged = reference_support(refs, kb)
    assert ok.supported and ok.values
    assert not bad.supported and bad.missing == (("80000", "price"),) and (bad.file, bad.line) == ("test.jsonl", 7)
    assert unjudged.supported and unjudged.values == ()


def test_a_dataset_without_a_knowledge_base_or_with_a_bad_template_is_refused(dalat) -> None:
    with pytest.raises(DataError, match="dataset.passages"):
        load_passages(dataclasses.replace(dalat, passages=None))
    with pytest.raises(ConfigError, match=r"dataset.rag.template=.*must contain \{question\}"):
        load_run_config(["dataset=dalat-tourism", "dataset.rag.template='Context: {passages}'"])
