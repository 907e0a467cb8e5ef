"""`tuneforge export`: the merged model as GGUF with its tokenizer and the run's chat template inside, an Ollama
Modelfile, and a round trip through transformers' GGUF loader that fails the export past its tolerance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneforge.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    root = tmp_path_factory.mktemp("export-run")
    run = load_run_config(["recipe=lora-tiny", "dataset=sample-chat", "hparams.max_steps=3",
                           f"output_root={root / 'outputs'}"])
    return Path(train(run, quiet=True)["run_dir"])


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_export_round_trips_with_template_tokenizer_and_modelfile(tiny_run: Path, quant: str,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from gguf import GGUFReader

    from tuneforge.evaluation.artifacts import load_run_tokenizer, open_run

    assert main(["export", f"run={tiny_run}", f"export.quant={quant}"]) == 0
    assert "greedy answers equal on 4 test prompts: OK" in capsys.readouterr().out
    out = tiny_run / "export" / "gguf"
    gguf = out / f"{tiny_run.parent.name}-{tiny_run.name}-{quant}.gguf"
    record = json.loads((out / f"roundtrip-{quant}.json").read_text())
    assert record["roundtrip"]["passed"] and all(record["roundtrip"]["checks"].values())
    assert record["roundtrip"]["logits"]["max_abs_diff"] <= record["roundtrip"]["atol"]
    from tuneforge.serve.llama_cpp_check import llama_cpp_available

    native = record["roundtrip"]["llama_cpp"]
    if llama_cpp_available():  # llama.cpp itself (what Ollama runs): same ids, template, logits, clean answers
        assert native["passed"] and native["checks"]["token_ids_equal"] and native["checks"]["chat_template_kept"]
        assert len(native["answers"]) == 4 and native["logits"]["n_tokens"] > 100
        assert native["tokens"]["llama.cpp"] == native["tokens"]["run"] and "first_difference" not in native["tokens"]
    else:
        assert "llama-cpp-python is not installed" in native["skipped"]
    fields = GGUFReader(str(gguf)).fields
    template = load_run_tokenizer(open_run(tiny_run), tiny_run / "merged").chat_template
    assert fields["tokenizer.chat_template"].contents() == template  # the template survives the export
    assert len(fields["tokenizer.ggml.tokens"].contents()) == 1977
    kinds = {t.tensor_type.name for t in GGUFReader(str(gguf)).tensors}
    assert kinds == ({"F16", "F32"} if quant == "f16" else {"Q8_0", "F32"})
    modelfile = (out / f"Modelfile.{quant}").read_text()
    assert f"FROM ./{gguf.name}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile and "PARAMETER temperature 0" in modelfile
    assert not [p for p in (tiny_run / "export").iterdir() if p.name.startswith(".")]


def test_export_past_the_tolerance_fails_loudly_and_writes_nothing(tiny_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from tuneforge.serve import export_command

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "export"))
    monkeypatch.setitem(export_command.ROUNDTRIP_RTOL, "q8_0", 1e-9)  # q8_0 cannot be this exact
    assert main(["export", f"run={run}", "export.quant=q8_0"]) == 2
    err = capsys.readouterr().err
    assert "GGUF round trip failed" in err and "logits_within_tolerance" in err and "no GGUF was written" in err
    left = sorted(p.name for p in (run / "export" / "gguf").iterdir())
    assert left == ["roundtrip-q8_0.failed.json"], left  # the comparison, and no .gguf or Modelfile
    record = json.loads((run / "export" / "gguf" / left[0]).read_text())
    assert record["gguf"] is None and not record["roundtrip"]["passed"]
    assert record["roundtrip"]["checks"]["logits_within_tolerance"] is False
    monkeypatch.setitem(export_command.ROUNDTRIP_RTOL, "q8_0", 5e-2)  # a passing export clears the failed record
    assert main(["export", f"run={run}", "export.quant=q8_0"]) == 0
    assert not (run / "export" / "gguf" / "roundtrip-q8_0.failed.json").exists()


def test_export_refuses_unknown_format_and_quant(tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", f"run={tiny_run}", "export.format=onnx"]) == 2
    assert "export.format='onnx' is not one of: gguf" in capsys.readouterr().err
    assert main(["export", f"run={tiny_run}", "export.quant=q4_k_m"]) == 2
    assert "export.quant='q4_k_m' is not one of: f32, f16, bf16, q8_0" in capsys.readouterr().err


def test_modelfile_template_family_matches_the_run_template() -> None:
    from transformers import AutoTokenizer

    from tuneforge.models import CHAT_TEMPLATES, TinyModelConfig, build_tiny_model
    from tuneforge.serve.ollama import FAMILIES, SAMPLE, template_family

    # built (or found) here: no other test's cache entry is assumed
    tok = AutoTokenizer.from_pretrained(build_tiny_model(TinyModelConfig()))
    assert template_family(tok) == "chatml"
    tok.chat_template = CHAT_TEMPLATES["gemma"]  # the template the Gemma recipes train with
    assert template_family(tok) == "gemma" and FAMILIES["gemma"][1](SAMPLE).startswith("<start_of_turn>user\n")


def test_the_pre_tokenizer_name_llama_cpp_splits_text_with() -> None:
    """A wrong tokenizer.ggml.pre changes how llama.cpp splits digits and spaces, hence the token ids."""
    from tuneforge.serve.gguf_export import _pre_type

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert _pre_type(byte_level) == "gpt-2"
    assert _pre_type({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                             byte_level]}) == "smollm"
    assert _pre_type({**byte_level, "use_regex": False}) == "default" and _pre_type(None) == "default"


def test_keys_copied_from_the_base_gguf_keep_the_exports_own_name(tmp_path: Path) -> None:
    """The vocabulary and architecture keys come from the base model's GGUF; its general.name does not."""
    from gguf import GGUFReader, GGUFWriter

    from tuneforge.serve.gguf_export import _copy_source_keys

    src = GGUFWriter(str(tmp_path / "base.gguf"), "gemma3")
    src.add_name("Gemma 3 270m")
    src.add_tokenizer_model("llama")
    src.add_context_length(32768)
    for step in (src.write_header_to_file, src.write_kv_data_to_file, src.write_tensors_to_file, src.close):
        step()
    out = GGUFWriter(str(tmp_path / "export.gguf"), "gemma3")
    out.add_name("lora-gemma3-run")
    _copy_source_keys(out, tmp_path / "base.gguf")
    for step in (out.write_header_to_file, out.write_kv_data_to_file, out.write_tensors_to_file, out.close):
        step()
    fields = GGUFReader(str(tmp_path / "export.gguf")).fields
    assert fields["general.name"].contents() == "lora-gemma3-run"
    assert fields["tokenizer.ggml.model"].contents() == "llama"
    assert fields["gemma3.context_length"].contents() == 32768
