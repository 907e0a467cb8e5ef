"""Every lint rule: a failing case (found at the exact line) and a passing case; output format; exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.data.files import chat, lint_config, write_lines
from tuneforge.data.lint import RULES
from tuneforge.data.pipeline import TokenOptions, run_pipeline
from tuneforge.data.tokens import TokenCounter
from tuneforge.schema.dataset import ForbiddenClaim


def ok(i: int, **kw: Any) -> dict[str, Any]:
    return chat(f"câu hỏi số {i}", f"Dạ, đây là câu trả lời số {i}.", **kw)


def with_category(row: dict[str, Any], category: str) -> dict[str, Any]:
    return {**row, "category": category}


BOM = b"\xef\xbb\xbf"
LONG = chat("câu hỏi dài", " ".join(["chữ"] * 30))
CLAIM = ForbiddenClaim(id="beach-in-dalat", pattern=r"biển\s+(ở\s+)?Đà Lạt", message="Đà Lạt không có biển")

# rule -> (failing rows, the lines it must be reported at, passing rows, config overrides)
CASES: dict[str, tuple[list[Any], list[int], list[Any], dict[str, Any]]] = {
    "D001": ([ok(1), '{"messages": [', ok(3)], [2], [ok(1), ok(2), ok(3)], {}),
    "D002": ([ok(1), b'{"messages": "\xff\xfe"}', ok(3)], [2], [ok(1), ok(2), ok(3)], {}),
    "D003": ([BOM + json.dumps(ok(1)).encode(), ok(2)], [1], [ok(1), ok(2)], {}),
    "D004": ([ok(1), ok(2), "", ok(4)], [3], [ok(1), ok(2), ok(4)], {}),
    "D010": ([ok(1), {"msgs": []}, [1, 2], {"messages": [{"role": "user", "content": 5}]}],
             [2, 3, 4], [ok(1)], {}),
    "D011": ([ok(1), {"messages": [{"content": "hỏi"}, {"role": "assistant", "content": "đáp"}]}], [2],
             [ok(1), ok(2)], {}),
    "D012": ([ok(1), ok(2), {"messages": [{"role": "human", "content": "hỏi"},
                                          {"role": "assistant", "content": "đáp"}]}], [3], [ok(1), ok(2)], {}),
    "D013": ([ok(1),
              {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                            {"role": "assistant", "content": "c"}]},
              {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                            {"role": "user", "content": "c"}]},
              {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                            {"role": "assistant", "content": "c"}]},
              {"messages": [{"role": "assistant", "content": "a"}]}],
             [2, 3, 4, 5], [ok(1, system="s"), {"messages": [{"role": "system", "content": "s"},
                                                 {"role": "user", "content": "a"},
                                                 {"role": "assistant", "content": "b"},
                                                 {"role": "user", "content": "c"},
                                                 {"role": "assistant", "content": "d"}]}], {}),
    "D014": ([ok(1), ok(2), chat("hỏi", "   \n")], [3], [ok(1), ok(2)], {}),
    "D020": ([ok(1), ok(2), LONG], [3], [ok(1), ok(2)], {"lint": {"max_tokens": 30}}),
    "D021": ([ok(1), chat("hỏi", "x" * (9 * 1024 * 1024)), ok(3)], [2], [ok(1), ok(3)], {}),
    "D030": ([ok(1), ok(2), ok(1)], [3], [ok(1), ok(2), ok(3)], {}),
    "D031": ([ok(1), ok(2), chat("CÂU HỎI  số 1?", "dạ, ĐÂY là câu trả lời số 1")], [3], [ok(1), ok(2)], {}),
    "D032": ([ok(1), ok(2), chat("Câu hỏi số 1", "Dạ, một câu trả lời khác.")], [3], [ok(1), ok(2)], {}),
    "D040": ([ok(1, system="S"), ok(2, system="S"), ok(3, system="T"), ok(4)], [3, 4],
             [ok(1, system="S"), ok(2, system="S")], {}),
    "D050": ([ok(i) for i in range(3)], [0], [ok(i) for i in range(10)], {"min_error": 10}),
    "D051": ([ok(i) for i in range(3)], [0], [ok(i) for i in range(5)], {"min_warning": 5}),
    "D060": ([with_category(ok(i), "gia_ca") for i in range(4)] + [with_category(ok(9), "dia_chi")], [0],
             [with_category(ok(i), "gia_ca" if i % 2 else "dia_chi") for i in range(4)],
             {"lint": {"max_category_ratio": 2.0}}),
    "D061": ([with_category(ok(1), "gia_ca"), with_category(ok(2), "am_thuc")], [2],
             [with_category(ok(1), "gia_ca"), with_category(ok(2), "dia_chi")],
             {"lint": {"categories": ["gia_ca", "dia_chi"], "max_category_ratio": 3.0}}),
    "D070": ([ok(1), chat("Đà Lạt có biển không?", "Dạ, biển ở Đà Lạt rất đẹp."), ok(3)], [2],
             [ok(1), chat("Đà Lạt có biển không?", "Dạ không ạ, Đà Lạt không có biển; gần nhất là Nha Trang."),
              ok(3)], {"forbidden_claims": [CLAIM]}),
    # a probe question (data/dalat/probes.csv, line 2), as written and behind an augmentation prefix
    "D071": ([ok(1), chat("Bãi biển đẹp nhất Đà Lạt là bãi nào vậy bạn?", "Dạ, Đà Lạt không có biển."),
              chat("Xin hỏi, bãi biển đẹp nhất Đà Lạt là bãi nào vậy bạn", "Dạ, Đà Lạt không có biển ạ.")], [2, 3],
             [ok(1), chat("Đà Lạt có bãi tắm nào không?", "Dạ, Đà Lạt không có biển.")],
             {"probes": "data/dalat/probes.csv"}),
}


def _lint(tmp_path: Path, name: str, rows: list[Any], overrides: dict[str, Any], word_tokenizer: Any):
    path = write_lines(tmp_path / f"{name}.jsonl", rows)
    ds = lint_config(path, **{k: v for k, v in overrides.items()})
    limit = ds.lint.max_tokens or 512
    tokens = TokenOptions(TokenCounter(word_tokenizer, "words"), max_tokens=limit, seq_len=512)
    return path, run_pipeline(ds, path, None, tokens=tokens, augment=False, quarantine=tmp_path / f"{name}.q.jsonl")


# the preference-data rules have their file:line cases in tests/data/test_preference.py (pairs, not chats)
PREFERENCE_RULES = {"D080", "D081", "D082", "D083", "D084"}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) | PREFERENCE_RULES == set(RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fails_at_the_exact_line_and_passes_when_fixed(tmp_path: Path, rule: str, word_tokenizer: Any) -> None:
    bad, lines, good, overrides = CASES[rule]
    path, result = _lint(tmp_path, "bad", bad, overrides, word_tokenizer)
    found = [f for f in result.log.sorted_items() if f.rule == rule]
    assert [f.line for f in found] == lines, [str(f) for f in result.log.sorted_items()]
    assert all(str(f).startswith(f"{path}:{f.line}: {rule} " if f.line else f"{path}: {rule} ") for f in found)
    assert result.log.counts[rule] == len(lines)
    expected_status = 2 if RULES[rule].severity == "error" else 1
    assert result.exit_status >= expected_status
    if RULES[rule].action == "reject":  # rejected rows are in the quarantine with their reason
        q = [json.loads(x) for x in (tmp_path / "bad.q.jsonl").read_text(encoding="utf-8").splitlines()]
        assert sorted(r["line"] for r in q if rule in r["rules"]) == lines

    _, clean = _lint(tmp_path, "good", good, overrides, word_tokenizer)
    assert [str(f) for f in clean.log.sorted_items()] == []
    assert clean.exit_status == 0


def test_counts_are_conserved(tmp_path: Path, word_tokenizer: Any) -> None:
    rows = [ok(1), '{"bad', ok(2), ok(1), "", chat("hỏi", " "), ok(3), chat("CÂU HỎI SỐ 2", "dạ đây là câu trả lời số 2")]
    path = write_lines(tmp_path / "mixed.jsonl", rows)
    out = tmp_path / "prepared"
    result = run_pipeline(lint_config(path), path, out)
    c = result.counts
    assert c["source_in"] == 7 and c["blank_lines"] == 1
    assert c["source_in"] == c["source_kept"] + c["source_rejected"] == 5 + 2
    assert c["examples_generated"] == c["examples_kept"] + c["examples_rejected"] == 3 + 2
    assert sum(result.sizes.values()) == c["examples_kept"]
    written = sum(len((out / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val", "test"))
    quarantined = (out / "quarantine.jsonl").read_text().splitlines()
    assert written == c["examples_kept"] and len(quarantined) == c["source_rejected"] + c["examples_rejected"]
    assert sorted(json.loads(q)["line"] for q in quarantined) == [2, 4, 6, 8]


def test_cli_lint_prints_findings_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneforge.cli import main

    clean = write_lines(tmp_path / "clean.jsonl", [ok(i) for i in range(60)])
    assert main(["data", "lint", str(clean), "--no-tokens"]) == 0
    warn = write_lines(tmp_path / "warn.jsonl", [ok(i) for i in range(20)])
    assert main(["data", "lint", str(warn), "--no-tokens"]) == 1
    out = capsys.readouterr().out
    assert f"{warn}: D051 " in out and "(whole file)" in out and ":0:" not in out  # the file, not a line 0
    bad = write_lines(tmp_path / "bad.jsonl", [ok(i) for i in range(60)] + ["not json"])
    report = tmp_path / "report.json"
    assert main(["data", "lint", str(bad), "--no-tokens", "--report", str(report)]) == 2
    out = capsys.readouterr().out
    assert f"{bad}:61: D001 invalid JSON" in out
    assert "61 in = 60 kept + 1 rejected" in out
    data = json.loads(report.read_text())
    assert data["exit_status"] == 2 and data["findings"]["by_rule"]["D001"]["count"] == 1
    assert (tmp_path / "bad.jsonl").read_text().count("\n") == 61  # lint changes nothing


def test_alpaca_file_is_linted_with_its_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneforge.cli import main

    rows = [{"instruction": f"hỏi {i}", "output": f"đáp {i}"} for i in range(50)] + [{"instruction": "hỏi"}]
    path = write_lines(tmp_path / "alpaca.jsonl", rows)
    assert main(["data", "lint", str(path), "--no-tokens"]) == 2
    assert f"{path}:51: D010 missing field 'output'" in capsys.readouterr().out
