"""Issue 26: the user's bytes survive lint (a Latin-1 row is quarantined exactly), a UTF-16/32 file is one
problem named by its encoding, and ``data lint`` honours ``dataset.*`` overrides and ``dataset.path=FILE``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.data.files import chat, write_lines
from tuneforge.cli import main

LATIN1 = '{"messages": [{"role": "user", "content": "caf\xe9 \xe0 \xd0\xe0 L\xe1t?"}, ' \
         '{"role": "assistant", "content": "D\xe1, c\xf3."}]}'.encode("latin-1")


@pytest.mark.parametrize("fmt", ["chat", "csv_qa"])
def test_a_latin1_row_is_quarantined_with_its_original_bytes(tmp_path: Path, fmt: str) -> None:
    if fmt == "chat":
        raw = LATIN1
        src = write_lines(tmp_path / "rows.jsonl", [chat("Đà Lạt ở đâu?", "Dạ, ở Lâm Đồng."), raw])
    else:
        raw = "Caf\xe9 \xe0 \xd0\xe0 L\xe1t?,D\xe1 c\xf3".encode("latin-1")
        src = tmp_path / "rows.csv"
        src.write_bytes(b"question,answer\n" + "Đà Lạt ở đâu?,Dạ ở Lâm Đồng\n".encode() + raw + b"\n")
    q = tmp_path / "q.jsonl"
    assert main(["data", "lint", str(src), "--no-tokens", "--quarantine", str(q)]) == 2
    rows = [json.loads(x) for x in q.read_text(encoding="utf-8").splitlines()]
    assert [r["rules"] for r in rows] == [["D002"]]
    assert base64.b64decode(rows[0]["raw_base64"]) == raw  # byte for byte, no U+FFFD in what is kept


@pytest.mark.parametrize("encoding,name", [("utf-16", "UTF-16 LE, with a byte-order mark"), ("utf-16-be", "UTF-16 BE"),
                                           ("utf-16-le", "UTF-16 LE"), ("utf-32", "UTF-32 LE, with a byte-order mark")])
def test_a_utf16_file_is_one_problem_naming_its_encoding(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        encoding: str, name: str) -> None:
    src = tmp_path / "rows.jsonl"
    rows = [json.dumps(chat(f"Câu hỏi {i} về Đà Lạt?", "Dạ, có ạ."), ensure_ascii=False) for i in range(20)]
    src.write_bytes("\n".join(rows).encode(encoding))
    assert main(["data", "lint", str(src), "--no-tokens"]) == 2
    err = capsys.readouterr().err
    assert f"the file is {name}, not UTF-8" in err and str(src) in err
    assert "not valid UTF-8" not in err and len(err.strip().splitlines()) == 1


def _alpaca(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "rows.jsonl", [{"instruction": f"Câu hỏi {i} về Đà Lạt?", "input": "",
                                                   "output": "Dạ, có ạ."} for i in range(3)])


def test_lint_honours_dataset_format_and_dataset_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _alpaca(tmp_path)
    report = tmp_path / "r.json"
    few = ["dataset.lint.min_examples_error=0", "dataset.lint.min_examples_warning=0"]  # nested keys apply too
    # the file is alpaca: read as chat (the guess from a .jsonl name) every row is wrong
    assert main(["data", "lint", str(src), "--no-tokens", "dataset.format=chat", "--report", str(report)]) == 2
    assert main(["data", "lint", str(src), "--no-tokens", "dataset.format=alpaca", "--report", str(report), *few]) == 0
    assert json.loads(report.read_text())["format"] == "alpaca"
    assert main(["data", "lint", f"dataset.path={src}", "dataset.format=alpaca", "--no-tokens", *few]) == 0
    assert main(["data", "lint", "dataset.format=alpaca", "--no-tokens"]) == 2
    assert "data lint needs a file" in capsys.readouterr().err


def test_data_lint_and_train_find_a_relative_dataset_path_from_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`data lint dataset.path=FILE` (tokens counted, so the run config is composed) said "file not found" for
    a file in the current directory: a relative path typed on the command line is read from where the user is."""
    from tuneforge.config.compose import load_run_config

    monkeypatch.chdir(tmp_path)
    rows = [{"instruction": f"Question {i} about Đà Lạt?", "input": "", "output": f"Answer {i}."} for i in range(12)]
    Path("mine.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rc = main(["data", "lint", "dataset.path=mine.jsonl", "dataset.format=alpaca"])
    printed = capsys.readouterr()
    assert rc == 1, printed.err  # 1: warnings only (12 examples are few), not an error
    assert "12 kept + 0 rejected" in printed.out and "tokens" in printed.out and "not found" not in printed.err
    run = load_run_config(["recipe=lora-tiny", "dataset.path=mine.jsonl", "dataset.format=alpaca"])
    assert run.dataset.path == str(tmp_path / "mine.jsonl")
