"""The eval reads answers as a person would: degeneration, the fact guard both ways, required claims, usable rate,
and a verdict that never calls a model better while most of its answers are unusable."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.data.lint import FactGuard
from tuneforge.data.probes import load_probes
from tuneforge.errors import DataError
from tuneforge.evaluation.answer_checks import repetition_loop, review_answers
from tuneforge.evaluation.report import headline, unusable_answers, usable_verdict
from tuneforge.paths import project_root

DATA = project_root() / "data" / "dalat"


@pytest.fixture(scope="module")
def ds():
    return load_run_config(["dataset=dalat-tourism"]).dataset


def _seed_rows() -> list[dict[str, str]]:
    with (DATA / "seed.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_every_reference_answer_is_usable(ds) -> None:
    """The checks are calibrated on the hand-written answers: none is flagged, except by the off-topic check,
    which misses a synonym (documented: 8 of 128, "Thời tiết thế nào?" answered about "khí hậu")."""
    rows = _seed_rows()
    answers = [r["answer"] for r in rows]
    review = review_answers(ds, answers, references=answers, prompts=[r["question"] for r in rows],
                            new_tokens=None, max_new_tokens=None)
    flagged = [(r["question"], why) for r, why in zip(rows, review["reasons"]) if why]
    assert [f for f in flagged if any(not w.startswith("off topic") for w in f[1])] == []
    assert len(flagged) <= 8, flagged


def test_an_answer_about_something_else_is_off_topic(ds) -> None:
    questions = ["Đi Đà Lạt có cần đặt phòng trước không?", "Đà Lạt có gì hay cho cặp đôi?",
                 "Vé vào Crazy House giá bao nhiêu?"]
    answers = ["Dạ, Đà Lạt là thành phố cao nguyên, không có biển. Biển gần nhất là Nha Trang.",
               "Dạ, gợi ý cho cặp đôi: đồi chè Cầu Đất, hồ Tuyền Lâm, chợ đêm.",
               "Dạ, vé vào Crazy House khoảng 80.000 đồng/người lớn; giá chỉ mang tính tham khảo."]
    review = review_answers(ds, answers, references=[None] * 3, prompts=questions, new_tokens=None,
                            max_new_tokens=None)
    assert [any(r.startswith("off topic") for r in rs) for rs in review["reasons"]] == [True, False, False]


def test_the_topic_check_learns_from_the_questions_not_the_retrieved_passages() -> None:
    # RAFT rows put passages in the user turn: learnt from them, "Langbiang" and "lịch trình" would be function
    # words and an itinerary through Langbiang would be off topic for "Lịch trình leo núi Langbiang"
    from tuneforge.evaluation.answer_checks import topic_check

    raft = load_run_config(["dataset=dalat-tourism", "dataset.rag_training.enabled=true",
                            "dataset.rag_training.share=0.8"]).dataset
    check = topic_check(raft)
    question = "Lịch trình leo núi Langbiang trong một ngày?"
    assert "langbiang" in check.terms(question)[1]
    assert not check.off_topic(question, "Dạ, gợi ý: sáng leo núi Langbiang, chiều về hồ Tuyền Lâm.")
    assert check.off_topic(question, "Dạ, bánh tráng nướng khoảng 20.000 đồng/cái.")


def test_the_word_salad_of_issue_21_is_unusable(ds) -> None:
    """The answers that the old eval scored as a success (they open with "Dạ" and have no forbidden claim)."""
    ref = "Dạ, vé vào Crazy House khoảng 80.000 đồng/người lớn; giá chỉ mang tính tham khảo."
    salad = ["Dạ, so sánh: - Tháng 1: máy xe máy, cách trung tâm đèo mát - Tháng 2: máy xe máy, cách trung tâm "
             "đèo mát - Tháng 3: máy xe máy, cách trung tâm",
             "Dạ, khoảng 1.500.000 đồng/người lớn, cách trung tâm Đà Lạt khoảng 1.500.000 đồng/người lớn, cách "
             "trung tâm Đà Lạt khoảng 1.500.000 đồng/người lớn; giá chỉ mang tính tham khảo.",
             "The capital of France is Paris.", "", "Dạ, vé khoảng 80.000 đồng"]
    review = review_answers(ds, salad, references=[ref] * 5, prompts=["q"] * 5, new_tokens=[30, 40, 8, 0, 64],
                            max_new_tokens=64)
    assert review["usable"] == [False] * 5
    assert "repetition loop" in review["reasons"][0][0] and "repetition loop" in review["reasons"][1][0]
    assert "not in the language of the question" in review["reasons"][2]
    assert review["reasons"][3] == ["empty answer"]
    assert any(r.startswith("cut off") for r in review["reasons"][4])
    assert any("tham khảo" in r for r in review["reasons"][4])  # the price disclaimer is missing too
    assert repetition_loop("Ngày 1: hồ Xuân Hương. Ngày 2: Langbiang. Ngày 3: thác Datanla.") is None


def test_fact_guard_sees_paraphrases_and_respects_negation(ds) -> None:
    guard = FactGuard(ds.forbidden_claims, ds.negation)
    stated = {
        "Bờ cát trắng của Đà Lạt rất đẹp.": "beach-in-dalat",
        "Mùa đông Đà Lạt thường có tuyết phủ trắng.": "snow-in-dalat",
        "Thiền viện Trúc Lâm nhìn ra hồ Xuân Hương.": "truc-lam-wrong-lake",
    }
    for sentence, claim in stated.items():
        hits = guard.find(sentence)
        assert claim in {h.id for h in hits}, sentence
        assert any(h.check == "concepts" for h in hits), sentence  # the regexes alone miss these
    for right in ("Không có bãi biển ở Đà Lạt.", "Du khách không thể tắm biển ở Đà Lạt vì thành phố ở trên cao.",
                  "Đà Lạt ở độ cao khoảng 1.500 m so với mực nước biển.", "Biển gần nhất là Nha Trang, khoảng 130 km.",
                  "Anh/chị nên chú ý biển báo khi đi đèo.", "Đà Lạt không có tuyết.",
                  "Đà Lạt không có biển, muốn tắm biển thì xuống Nha Trang (khoảng 130 km)."):
        assert guard.find(right) == [], right
    # a negation in one clause does not deny the claim of the next (a default-run answer, 2026-12-05)
    contradicts = "Dạ, Đà Lạt không có biển, nên anh/chị có thể tắm biển ở Đà Lạt."
    assert {h.id for h in guard.find(contradicts)} >= {"swim-in-dalat-sea"}
    assert guard.find("Dạ, Đà Lạt không có biển, trời lại mát, không có tuyết.") == []


def test_fact_guard_on_the_labelled_set(ds) -> None:
    """Recall and precision of both checks together on data/dalat/fact-guard-labelled.csv (the lexicons were
    written with this set in view: it shows they work, not how they generalise)."""
    guard = FactGuard(ds.forbidden_claims, ds.negation)
    with (DATA / "fact-guard-labelled.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    flagged = [bool(guard.find(r["sentence"])) for r in rows]
    pos = [f for f, r in zip(flagged, rows) if r["label"] == "1"]
    neg = [f for f, r in zip(flagged, rows) if r["label"] == "0"]
    assert len(pos) >= 50 and len(neg) >= 70
    assert sum(pos) / len(pos) >= 0.75  # recall
    assert sum(neg) == 0  # a correct sentence is never flagged: it would make a good answer unusable


def test_no_seed_answer_trips_the_guard(ds) -> None:
    guard = FactGuard(ds.forbidden_claims, ds.negation)
    hits = [(r["question"], h.id) for r in _seed_rows() for h in guard.find(r["answer"])]
    assert hits == []


def test_probes_load_with_traps_and_required_claims(ds) -> None:
    probes = load_probes(ds)
    assert len(probes) >= 30 and sum(p.trap for p in probes) >= 8
    assert all(p.required for p in probes if p.trap)
    seed_questions = {r["question"].strip().casefold() for r in _seed_rows()}
    assert not [p.question for p in probes if p.question.casefold() in seed_questions]
    beach = next(p for p in probes if "bãi biển" in p.question.lower())
    review = review_answers(ds, ["Dạ, Đà Lạt có bãi biển Xuân Hương rất đẹp.",
                                 "Dạ, Đà Lạt là thành phố cao nguyên, không có biển ạ; biển gần nhất là Nha Trang."],
                            references=[None, None], prompts=[beach.question] * 2, new_tokens=[20, 20],
                            max_new_tokens=64, required=[(beach.required, beach.required_message)] * 2)
    assert review["usable"] == [False, True]
    assert any(r.startswith("misses the right fact") for r in review["reasons"][0])


def test_a_trap_answer_that_takes_its_fact_back_is_not_answered_right(ds) -> None:
    """Two answers of the SFT run (outputs/dpo-gemma3/2026-12-05_23-41-29, eval.json probes), verbatim in their
    opening: each states the required fact, then contradicts it. A reader counts both wrong; so must traps_right."""
    from tuneforge.evaluation.runner import probe_results

    probes = [p for p in load_probes(ds) if p.question in (
        "Cả nhà lên Đà Lạt chơi, chỗ nào tắm biển được vậy bạn?",
        "Tháng mấy lên Đà Lạt thì ngắm được tuyết rơi hả bạn?")]
    assert len(probes) == 2 and all(p.trap for p in probes)
    takes_back = ["Dạ, Đà Lạt là thành phố cao nguyên nên không có biển ạ. Để tắm biển, anh/chị có thể chọn:\n"
                  "- Thác Datanla: gần hồ Xuân Hương, đi bộ được 1–2 phút.",
                  "Dạ, Đà Lạt không có tuyết, kể cả vào những tháng lạnh nhất, nên anh/chị có thể chọn:\n"
                  "- Đi bộ qua đồi chè và cà phê ngắm tuyết."]
    right = ["Dạ, Đà Lạt là thành phố cao nguyên, không có biển ạ; muốn tắm biển anh/chị xuống Nha Trang, "
             "cách khoảng 130 km.",
             "Dạ, Đà Lạt không có tuyết, kể cả vào những tháng lạnh nhất; mùa đông chỉ se lạnh, nhất là ban đêm."]

    def side(answers: list[str]) -> dict:
        review = review_answers(ds, answers, references=[None, None], prompts=[p.question for p in probes],
                                new_tokens=[40, 40], max_new_tokens=200,
                                required=[(p.required, p.required_message) for p in probes])
        return {"answers": answers, "review": review}

    wrong_side, right_side = side(takes_back), side(right)
    assert all(not any(r.startswith("misses") for r in rs) for rs in wrong_side["review"]["reasons"])  # fact stated
    assert all(any(r.startswith("forbidden claim") for r in rs) for rs in wrong_side["review"]["reasons"])
    out = probe_results(probes, {"base": wrong_side, "finetuned": right_side})
    assert (out["base"]["traps_right"], out["finetuned"]["traps_right"]) == (0, 2)


def test_a_bad_probe_row_names_file_line_and_rule(tmp_path: Path, ds) -> None:
    from dataclasses import replace

    path = tmp_path / "probes.csv"
    path.write_text("question,category,trap,required,required_message\n"
                    "Đà Lạt có biển không?,dia_chi,yes,,\n"
                    "Đà Lạt cao bao nhiêu?,dia_chi,maybe,,\n"
                    "Đà Lạt ở đâu?,dia_chi,no,(unclosed,\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_probes(replace(ds, probes=str(path)))
    text = str(err.value)
    assert f"{path}:2: a trap question must declare its required claim" in text
    assert f"{path}:3: trap='maybe'" in text
    assert f"{path}:4: invalid regex" in text


def _results(tuned_usable: list[bool], base_usable: list[bool]) -> dict:
    def review(usable: list[bool]) -> dict:
        return {"usable": usable, "reasons": [[] if u else ["repetition loop (x)"] for u in usable],
                "n": len(usable), "n_usable": sum(usable), "usable_rate": 100 * sum(usable) / len(usable),
                "reason_counts": {"repetition loop": len(usable) - sum(usable)}}

    n = len(tuned_usable)
    metrics = {"usable_rate": 0.0, "loss": 2.0, "perplexity": 7.4, "rouge_l": 5.0, "style_rate": 0.0}
    return {"base": dict(metrics, usable_rate=review(base_usable)["usable_rate"]),
            "finetuned": {"usable_rate": review(tuned_usable)["usable_rate"], "loss": 1.0, "perplexity": 2.7,
                          "rouge_l": 30.0, "style_rate": 100.0},
            "style": {"base": {"review": review(base_usable), "forbidden_claims": []},
                      "finetuned": {"review": review(tuned_usable), "forbidden_claims": []}},
            "samples": [{"prompt": f"q{i}", "base": "b", "finetuned": "t", "reference": "r"} for i in range(n)]}


def test_the_verdict_never_calls_a_mostly_unusable_model_better() -> None:
    """Loss, ROUGE-L and style all improve, but 3 of 4 answers loop: the headline says NOT USABLE."""
    res = _results([True, False, False, False], [False] * 4)
    tone, text = usable_verdict(res)
    assert tone == "unusable" and text.startswith("NOT USABLE")
    assert headline(res).startswith("NOT USABLE") and "better:" not in headline(res).split(".")[0]
    assert [b["prompt"] for b in unusable_answers(res)] == ["q1", "q2", "q3"]
    good = _results([True, True, True, False], [False] * 4)
    assert usable_verdict(good)[0] == "better"
    assert headline(good).startswith("Fine-tuned is better: 3 of 4 test answers usable (75%, base 0%)")


def test_broken_words_and_stray_markup_are_unusable(ds) -> None:
    """The garbled answers of the Gemma run that the checks passed: a non-word in place of a unit, a syllable
    glued to another, markup from pre-training. A real loanword ("cafe") and the data's own names pass."""
    ref = "Dạ, vé vào Crazy House khoảng 60.000–100.000 đồng/người lớn; giá chỉ mang tính tham khảo."
    answers = ["Dạ, vé vào Crazy House khá 15–30 phoege; giá chỉ mang tính tham khảo.",
               "Dạ, vé vào Crazy House khoảng 100.000 triệuện; giá chỉ mang tính tham khảo.",
               "Dạ, vé vào Crazy House khoảng 80.000 đồng</font-mce-section>; giá chỉ mang tính tham khảo.",
               "Dạ, vé vào Crazy House khoảng 80.000 đồng, có quán cafe gần đó; giá chỉ mang tính tham khảo."]
    review = review_answers(ds, answers, references=[ref] * 4, prompts=["Vé vào Crazy House giá bao nhiêu?"] * 4,
                            new_tokens=None, max_new_tokens=None)
    assert review["reasons"][0] == ['not a word ("phoege")']
    assert review["reasons"][1] == ['not a word ("triệuện")']
    assert review["reasons"][2] == ["stray markup (</font-mce-section>)"]
    assert review["usable"] == [False, False, False, True]
    assert review["reason_counts"] == {"not a word": 2, "stray markup": 1}


def test_the_word_check_needs_a_language_with_a_syllable_grammar() -> None:
    from tuneforge.data.words import SYLLABLE_GRAMMARS, vietnamese_syllable
    from tuneforge.schema.dataset import WORD_CHECK_LANGUAGES

    assert set(WORD_CHECK_LANGUAGES) == set(SYLLABLE_GRAMMARS)
    assert all(map(vietnamese_syllable, re.findall(r"\S+", "nghiêng khuya tuyết được quốc gì giữa thuở hoà hòa khỏe")))
    assert not any(map(vietnamese_syllable, ["phoege", "triệuện", "nguyễnn", "cafe", "hóà"]))
    # without a language the word check is off: an English dataset's words are not judged by a Vietnamese grammar
    plain = load_run_config(["dataset=dalat-tourism", "dataset.language=null"]).dataset
    review = review_answers(plain, ["Dạ, vé khoảng 15–30 phoege; giá chỉ mang tính tham khảo."], references=[None],
                            prompts=["Vé vào Crazy House giá bao nhiêu?"], new_tokens=None, max_new_tokens=None)
    assert not any(r.startswith("not a word") for r in review["reasons"][0])
    with pytest.raises(Exception, match=r"dataset.language='fr' has no word check; choose one of: vi"):
        load_run_config(["dataset=dalat-tourism", "dataset.language=fr"])


def test_a_price_or_distance_the_reference_does_not_hold_is_wrong(ds) -> None:
    """The Crazy House answer of the default run: the right shape, the wrong price. A value inside the
    reference's range is right; a value the model was shown (a retrieved passage) is right too."""
    ref = "Dạ, vé vào Crazy House khoảng 60.000–100.000 đồng/người lớn; giá chỉ mang tính tham khảo."
    q = "Vé vào Crazy House giá bao nhiêu?"
    answers = ["Dạ, vé vào Crazy House khoảng 100.000–150.000 đồng/người lớn; giá chỉ mang tính tham khảo.",
               "Dạ, vé vào Crazy House khoảng 80.000 đồng/người lớn; giá chỉ mang tính tham khảo."]
    review = review_answers(ds, answers, references=[ref, ref], prompts=[q, q], new_tokens=None,
                            max_new_tokens=None)
    assert review["reasons"] == [["wrong value (100.000–150.000 đồng; the reference: 60.000–100.000 đồng)"], []]
    from tuneforge.data.answer_review import wrong_values

    shown = "Thông tin tham khảo: Crazy House, vé 100.000–150.000 đồng."
    assert wrong_values(answers[0], ref, shown) == []
    assert wrong_values("Dạ, cách trung tâm 130 km.", "Dạ, sân bay cách trung tâm khoảng 30 km.") == ["130 km"]
    assert wrong_values("Dạ, vé 50.000 đồng.", "Dạ, nên đi buổi sáng.") == []  # no value to judge against
    # temperatures: below zero is read as such; within 10 °C of the reference's range is right
    weather = "Dạ, ban ngày thường khoảng 18–23°C, ban đêm có thể dưới 15°C."
    assert wrong_values("Dạ, ban ngày khoảng -15°C, ban đêm xuống dưới -20°C.", weather) == ["-15°C", "-20°C"]
    assert wrong_values("Dạ, ban đêm khoảng âm 10°C.", weather) == ["âm 10°C"]
    assert wrong_values("Dạ, ban ngày 24–27°C, ban đêm khoảng 10°C.", weather) == []
    assert wrong_values("Dạ, trưa có hôm 45°C.", weather) == ["45°C"]


def test_the_right_value_on_the_wrong_item_is_unusable(ds) -> None:
    """Counterfactual answers of the RAFT run (2026-12-06): the passage's bánh tráng price put on a hot pot or on
    bánh căn. A reader asking about bánh tráng nướng gets no price for it; the value check alone passes them."""
    q = "Bánh tráng nướng ở Đà Lạt bao nhiêu tiền một cái?"
    ref = ("Dạ, bánh tráng nướng khoảng 15.000–30.000 đồng/cái tùy nhân (trứng, xúc xích, phô mai, thịt bằm). "
           "Anh/chị có thể ăn ở chợ đêm. Giá chỉ mang tính tham khảo và có thể thay đổi theo thời điểm.")
    shown = "Bánh tráng nướng ở chợ đêm Đà Lạt khoảng 25.000–45.000 đồng/cái."
    tail = " Giá chỉ mang tính tham khảo và có thể thay đổi theo thời điểm."
    answers = ["Dạ, một nồi lẩu hoặc ly sữa đậu nành nóng khoảng 25.000–45.000 đồng/người lớn. Bánh căn khoảng "
               "25.000–45.000 đồng tùy nhân (trứng, xúc xích, phô mai, thịt bằm)." + tail,
               "Dạ, bánh tráng nướng khoảng 25.000–45.000 đồng/cái tùy nhân." + tail,
               # the item named in a list item of its own line, written inline
               "Dạ, giá tham khảo: - Bánh tráng nướng: khoảng 25.000–45.000 đồng/cái. - Sữa đậu nành: rẻ." + tail,
               "Dạ, bánh tráng nướng là món ăn vặt nổi tiếng, nên ăn ở chợ đêm." + tail]  # no price: not judged
    review = review_answers(ds, answers, references=[ref] * 4, prompts=[q] * 4, new_tokens=None,
                            max_new_tokens=None, contexts=[shown] * 4)
    assert [[r for r in rs if r.startswith("value beside")] for rs in review["reasons"]] == [
        ["value beside something else (25.000–45.000 đồng; no sentence with it names 'bánh tráng' / "
         "'tráng nướng')"], [], [], []]
    assert review["reasons"][1:] == [[], [], []]
    # an itinerary's reference names no item beside its values ("- 7 giờ: … khoảng 12 km"): not judged
    from tuneforge.data.answer_review import misplaced_values
    from tuneforge.evaluation.answer_checks import topic_check

    itinerary = "Dạ, gợi ý ngày leo Langbiang:\n- 7 giờ: xuất phát từ trung tâm (khoảng 12 km, 30 phút)."
    assert misplaced_values("Dạ, đi 20 km đến hồ Tuyền Lâm.", itinerary, "Lịch trình leo núi Langbiang trong "
                            "một ngày?", topic_check(ds)) == ([], [])
    # a comparison: the item is a word when the reference names no question pair beside its value
    ref2 = "Dạ, so sánh:\n- Xe máy: chủ động, rẻ (khoảng 100.000–250.000 đồng/ngày).\n- Xe công nghệ: an toàn."
    q2 = "Ở Đà Lạt nên thuê xe máy hay đi xe công nghệ?"
    assert misplaced_values("Dạ, so sánh: - Xe máy: rẻ (khoảng 100.000–250.000 đồng/ngày).", ref2, q2,
                            topic_check(ds)) == ([], [])
    assert misplaced_values("Dạ, phòng homestay khoảng 100.000–250.000 đồng/ngày.", ref2, q2,
                            topic_check(ds)) == (["100.000–250.000 đồng"], ["máy"])
