"""Preference data: the lint rules name file:line, the grouped split keeps a prompt's pairs together, every
line is accounted for, and the Đà Lạt pairs contain rejected answers that state forbidden claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.data.lint import FactGuard
from tuneforge.data.preference import findings_text
from tuneforge.data.prepare import prepare_splits

GOOD = "Dạ, hồ Xuân Hương nằm ngay trung tâm thành phố Đà Lạt, cạnh chợ Đà Lạt."
BAD = "Dạ, hồ Xuân Hương nằm ở Nha Trang, cạnh bãi tắm."


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _pairs_run(src: Path, *extra: str):
    return load_run_config(["dataset=dalat-pairs", f"dataset.path={src}", "dataset.heldout=null", "objective=dpo",
                            "dataset.name=pairs-test", *extra])


def _good_pairs(n: int) -> list[dict]:
    return [{"prompt": f"Câu hỏi số {i} về hồ Xuân Hương ở đâu?", "chosen": GOOD, "rejected": BAD} for i in range(n)]


def test_lint_rules_name_file_and_line(tmp_path: Path) -> None:
    rows = _good_pairs(12) + [
        {"prompt": "Hồ Xuân Hương ở đâu?", "chosen": GOOD, "rejected": GOOD},                       # 13: D080
        {"prompt": "Chợ Đà Lạt ở đâu?", "chosen": GOOD, "rejected": "  "},                          # 14: D081
        {"chosen": GOOD, "rejected": BAD},                                                          # 15: D082
        # the chosen side breaks the house style (no "Dạ"), the rejected one passes every check: D083
        {"prompt": "Ga Đà Lạt ở đâu?", "chosen": "Ga ở đường Quang Trung.", "rejected": "Dạ, Ga Đà Lạt ở đường "
         "Quang Trung, gần hồ Xuân Hương."},                                                        # 16: D083
        {"prompt": "Đà Lạt có biển không?", "chosen": "Dạ, Đà Lạt có biển đẹp.", "rejected": "Dạ, không."},  # 17: D070
        "{not json",                                                                                # 18: D001
    ]
    data = prepare_splits(_pairs_run(_write(tmp_path / "pairs.jsonl", rows)).dataset)
    text = findings_text(data.report)
    for line, rule in ((13, "D080"), (14, "D081"), (15, "D082"), (16, "D083"), (17, "D070"), (18, "D001")):
        assert any(f"pairs.jsonl:{line}: {rule} " in t
                   for t in text), (line, rule, text)
    counts = data.report["counts"]
    assert counts == {"lines_read": 18, "examples_kept": 12, "quarantined": 6, "skipped": 0}
    assert sum(data.sizes.values()) == 12
    assert len((data.dir / "quarantine.jsonl").read_text().splitlines()) == 6


def test_a_rejected_side_may_state_a_forbidden_claim(tmp_path: Path) -> None:
    rows = _good_pairs(10) + [{"prompt": "Đà Lạt có biển không?", "chosen": "Dạ, không ạ. Đà Lạt không có biển.",
                               "rejected": "Dạ, Đà Lạt có biển, anh/chị có thể tắm biển ở Đà Lạt."}]
    data = prepare_splits(_pairs_run(_write(tmp_path / "pairs.jsonl", rows)).dataset)
    assert data.report["counts"]["examples_kept"] == 11


def test_grouped_split_keeps_a_prompts_pairs_together(tmp_path: Path) -> None:
    rows = [{"prompt": f"Câu hỏi {i // 3} ở Đà Lạt?", "chosen": GOOD + f" ({j})", "rejected": BAD, "group": f"g{i // 3}"}
            for j, i in enumerate(range(60))]
    data = prepare_splits(_pairs_run(_write(tmp_path / "pairs.jsonl", rows)).dataset)
    where: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        for line in Path(getattr(data, split)).read_text(encoding="utf-8").splitlines():
            where.setdefault(json.loads(line)["prompt"][-1]["content"], set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    assert data.sizes["train"] > data.sizes["val"] > 0 and data.sizes["test"] > 0
    row = json.loads(Path(data.train).read_text(encoding="utf-8").splitlines()[0])
    assert row["prompt"][0]["role"] == "system" and row["chosen"][0]["role"] == "assistant"


def test_kto_rows_and_bad_labels(tmp_path: Path) -> None:
    rows = [{"prompt": f"Câu {i}?", "completion": GOOD, "desirable": "yes" if i % 2 else False} for i in range(12)]
    rows.append({"prompt": "Câu x?", "completion": GOOD, "desirable": "maybe"})
    run = load_run_config(["dataset=dalat-pairs", f"dataset.path={_write(tmp_path / 'kto.jsonl', rows)}",
                           "dataset.heldout=null", "dataset.format=kto", "objective=kto", "dataset.name=kto-test"])
    data = prepare_splits(run.dataset)
    assert any("kto.jsonl:13: D084 " in t for t in findings_text(data.report))
    labels = [json.loads(x)["label"] for s in ("train", "val", "test")
              for x in Path(getattr(data, s)).read_text().splitlines()]
    assert sorted(labels) == [False] * 6 + [True] * 6


def test_dalat_pairs_hold_forbidden_claims_on_the_rejected_side_only() -> None:
    run = load_run_config(["dataset=dalat-pairs", "objective=dpo"])
    guard = FactGuard(run.dataset.forbidden_claims, run.dataset.negation)
    for name in ("pairs.jsonl", "pairs-heldout.jsonl"):
        rows = [json.loads(x) for x in (Path("data/dalat") / name).read_text(encoding="utf-8").splitlines()]
        assert sum(bool(guard.find(r["rejected"])) for r in rows) >= len(rows) // 4
        assert not any(guard.find(r["chosen"]) for r in rows)
    data = prepare_splits(run.dataset)
    assert data.report["counts"]["quarantined"] == 0


@pytest.mark.parametrize("bad, message", [
    (["objective=dpo"], "trains on preference data"),
    (["dataset=dalat-pairs"], "train it with objective=dpo|orpo|kto"),
    (["dataset=dalat-pairs", "dataset.format=kto", "objective=dpo"], "use objective=kto"),
])
def test_objective_and_data_shape_must_agree(bad: list[str], message: str) -> None:
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_run_config(bad)


def test_trap_answers_get_a_plays_along_pair_on_every_question_variant() -> None:
    """A reference answer that corrects a false premise ("không có biển") is a trap question's answer: the pairs
    reject the answer that plays along with the premise, on every variant of the question, and each such
    rejected side states a forbidden claim (the fact guard finds it), while the chosen side corrects it."""
    from tuneforge.data import pair_builder as pb

    run = load_run_config(["dataset=dalat-pairs", "objective=dpo"])
    guard = FactGuard(run.dataset.forbidden_claims, run.dataset.negation)
    assert pb.plays_along("Dạ không ạ. Đà Lạt là thành phố cao nguyên, không có biển.") == \
        "Dạ, Đà Lạt là thành phố cao nguyên, có biển."
    assert pb.plays_along("Dạ, hồ Xuân Hương nằm ngay trung tâm.") is None
    examples = [{"answer": "Dạ, Đà Lạt không có tuyết, mùa đông chỉ se lạnh.", "system": None,
                 "questions": [f"Đà Lạt có tuyết không {i}?" for i in range(6)]},
                {"answer": GOOD, "system": None, "questions": [f"Hồ Xuân Hương ở đâu {i}?" for i in range(6)]}]
    pairs = list(pb.edit_pairs(examples, per_answer=2, states_claim=guard.find))
    along = [p for p in pairs if p["kind"] == "plays_along"]
    assert len(along) == 4 and {p["chosen"] for p in along} == {examples[0]["answer"]}
    assert len({p["prompt"] for p in pairs if p["chosen"] == examples[0]["answer"]}) == 6  # every variant, once
    assert all(guard.find(p["rejected"]) and not guard.find(p["chosen"]) for p in along)
    # without a claim the guard can find, no plays_along pair is made
    assert not [p for p in pb.edit_pairs(examples, per_answer=2, states_claim=lambda s: None)
                if p["kind"] == "plays_along"]
    rows = [json.loads(x) for x in Path("data/dalat/pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    shipped = [r for r in rows if r["kind"] == "plays_along"]
    assert len(shipped) >= 50 and all(guard.find(r["rejected"]) for r in shipped)
