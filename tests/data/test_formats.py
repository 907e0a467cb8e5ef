"""Every format reads into the canonical chat form and round-trips; the written chat JSONL is what the OpenAI
fine-tuning API, axolotl's chat_template type and the native backend's `datasets` loader accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.files import write_lines
from tuneforge.data.formats import FORMATS, guess_format, read_records, write_records
from tuneforge.data.lint import check_messages
from tuneforge.data.records import chat_line
from tuneforge.errors import DataError
from tuneforge.schema.dataset import EMBEDDING_FORMATS, FieldMap

SYSTEM = "Bạn là trợ lý du lịch Đà Lạt."
SINGLE_TURN = [
    ([{"role": "user", "content": "Đà Lạt ở tỉnh nào?"},
      {"role": "assistant", "content": "Dạ, Đà Lạt thuộc tỉnh Lâm Đồng, trên cao nguyên Lâm Viên."}], "dia_chi"),
    ([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Giá vé Datanla?\nCho 2 người"},
      {"role": "assistant", "content": 'Dạ, khoảng 50.000 đồng/người, "tham khảo", có dấu, phẩy.'}], "gia_ca"),
    ([{"role": "user", "content": "Đà Lạt có biển không?"},
      {"role": "assistant", "content": "Dạ không ạ.\n- Biển gần nhất: Nha Trang."}], None),
]
MULTI_TURN = [
    ([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Xin chào"},
      {"role": "assistant", "content": "Dạ, chào anh/chị."}, {"role": "user", "content": "Chợ Đà Lạt ở đâu?"},
      {"role": "assistant", "content": "Dạ, trên đường Nguyễn Thị Minh Khai."}], "dia_chi"),
]


def _read(path: Path, fmt: str, fields: FieldMap | None = None) -> list[tuple[list[dict], str | None]]:
    out = []
    for rec in read_records(path, fmt, fields):
        assert not rec.problems, rec
        messages, problems = check_messages(rec.messages)
        assert not problems, problems
        out.append((messages, rec.category))
    return out


# the embedding formats (pairs, triplets, scored_pairs) hold no conversations: tests/backends/test_sentence_transformers.py
@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - set(EMBEDDING_FORMATS)))
def test_every_format_round_trips(tmp_path: Path, fmt: str) -> None:
    items = SINGLE_TURN + (MULTI_TURN if fmt in ("chat", "sharegpt") else [])
    path = tmp_path / ("data.csv" if fmt == "csv_qa" else "data.jsonl")
    write_records(path, fmt, items)
    assert _read(path, fmt) == items
    # and the file written from what was read is byte-identical (a stable round trip)
    again = tmp_path / ("again.csv" if fmt == "csv_qa" else "again.jsonl")
    write_records(again, fmt, _read(path, fmt))
    assert again.read_bytes() == path.read_bytes()
    assert guess_format(path) == fmt or fmt == "chat"


def test_single_turn_formats_refuse_multi_turn(tmp_path: Path) -> None:
    for fmt in ("alpaca", "completion", "csv_qa"):
        with pytest.raises(DataError, match="one user turn"):
            write_records(tmp_path / "x", fmt, MULTI_TURN)


def test_readers_map_source_fields(tmp_path: Path) -> None:
    alpaca = write_lines(tmp_path / "a.jsonl", [{"instruction": "Dịch sang tiếng Anh", "input": "Xin chào",
                                                 "output": "Hello", "system": "Bạn là phiên dịch."}])
    [(msgs, _)] = _read(alpaca, "alpaca")
    assert msgs == [{"role": "system", "content": "Bạn là phiên dịch."},
                    {"role": "user", "content": "Dịch sang tiếng Anh\n\nXin chào"},
                    {"role": "assistant", "content": "Hello"}]
    share = write_lines(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "human", "value": "Hỏi"}, {"from": "gpt", "value": "Đáp"}]}])
    assert _read(share, "sharegpt")[0][0] == [{"role": "user", "content": "Hỏi"},
                                              {"role": "assistant", "content": "Đáp"}]
    custom = write_lines(tmp_path / "c.jsonl", [{"turns": [{"speaker": "user", "text": "Q"},
                                                           {"speaker": "assistant", "text": "A"}], "topic": "x"}])
    fields = FieldMap(messages="turns", role="speaker", content="text", category="topic")
    assert _read(custom, "chat", fields) == [([{"role": "user", "content": "Q"},
                                                {"role": "assistant", "content": "A"}], "x")]


def test_csv_rows_spanning_lines_report_their_first_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text('question,answer,category\n"Q1","A1\nsecond line",gia_ca\nQ2,A2,dia_chi\n', encoding="utf-8")
    recs = list(read_records(path, "csv_qa"))
    assert [r.line for r in recs] == [2, 4]
    assert recs[0].messages[1]["content"] == "A1\nsecond line"


def test_csv_without_required_columns_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("cau_hoi,tra_loi\nQ,A\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"qa.csv:1: csv_qa needs the columns 'question' and 'answer'"):
        list(read_records(path, "csv_qa"))


def test_prepared_chat_jsonl_is_accepted_by_openai_axolotl_and_datasets(tmp_path: Path) -> None:
    """OpenAI: each line {"messages": [...]}, roles system/user/assistant, string content, no other message
    keys, at least one assistant message (their fine-tuning data checks). axolotl `type: chat_template`
    defaults: field_messages=messages, role/content properties. The native backend: datasets' json loader."""
    path = tmp_path / "train.jsonl"
    path.write_text("".join(chat_line(m) + "\n" for m, _ in SINGLE_TURN + MULTI_TURN), encoding="utf-8")
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    for line in raw.decode("utf-8").splitlines():
        obj = json.loads(line)
        assert set(obj) == {"messages"}  # the category is not written: OpenAI would reject unknown keys
        for m in obj["messages"]:
            assert set(m) == {"role", "content"}
            assert m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str)
        assert any(m["role"] == "assistant" for m in obj["messages"])
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == 4 and ds[3]["messages"][-1]["content"] == "Dạ, trên đường Nguyễn Thị Minh Khai."
