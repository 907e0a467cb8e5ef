"""`tuneforge merge`: merged/ in HF format whose logits match base + adapter (parity.json), written
atomically; refused for a full fine-tune, a corrupted adapter, or an adapter of another base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.evaluation.shared_run import SharedRun, trained_lora_run
from tuneforge.cli import main
from tuneforge.errors import RunArtifactError
from tuneforge.merge import PARITY_ATOL, merge_run


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return trained_lora_run(tmp_path_factory)


@pytest.fixture(scope="module")
def merged_run(lora_run: SharedRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = lora_run.copy(tmp_path_factory.mktemp("merge") / "run")
    return run_dir, merge_run(run_dir, quiet=True)


def _no_leftovers(run_dir: Path) -> None:
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".merged")]


def test_merge_writes_hf_model_and_parity_holds(merged_run: tuple[Path, dict]) -> None:
    run_dir, info = merged_run
    merged = run_dir / "merged"
    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "parity.json"} <= names
    parity = json.loads((merged / "parity.json").read_text())["parity"]
    assert parity["passed"] is True and parity["atol"] == PARITY_ATOL["float32"]
    assert parity["max_abs_diff"] <= PARITY_ATOL["float32"]
    assert parity["top1_agreement"] == 1.0 and parity["n_tokens"] > 50
    assert info["parity"] == parity
    _no_leftovers(run_dir)
    # a plain transformers load, no PEFT: the merged model has no LoRA modules left
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert not [n for n, _ in model.named_modules() if "lora" in n]


def test_merge_command_prints_the_parity_numbers(merged_run: tuple[Path, dict],
                                                 capsys: pytest.CaptureFixture) -> None:
    run_dir, _ = merged_run
    assert main(["merge", f"run={run_dir}"]) == 0  # re-merging replaces merged/ atomically
    out = capsys.readouterr().out
    assert "max |Δlogit|" in out and "tolerance 0.001: OK" in out
    _no_leftovers(run_dir)


def test_merge_refuses_a_full_finetune(merged_run: tuple[Path, dict], tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    import shutil

    src, _ = merged_run
    run_dir = tmp_path / "full"
    shutil.copytree(src, run_dir)
    shutil.rmtree(run_dir / "adapter")
    (run_dir / "merged").rename(run_dir / "model")  # a complete model where a full fine-tune keeps it
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["method"]["name"] = "full"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["merge", f"run={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert "is a full fine-tune (method=full)" in err and "no adapter to merge" in err
    assert "Traceback" not in err and not (run_dir / "merged").exists()


def test_merge_refuses_a_corrupted_adapter(lora_run: SharedRun, tmp_path: Path) -> None:
    run_dir = lora_run.copy(tmp_path / "run")
    weights = run_dir / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(RunArtifactError, match="adapter_model.safetensors: corrupted or truncated"):
        merge_run(run_dir, quiet=True)
    assert not (run_dir / "merged").exists()
    _no_leftovers(run_dir)


def test_merge_refuses_an_adapter_config_that_is_not_json(lora_run: SharedRun, tmp_path: Path) -> None:
    run_dir = lora_run.copy(tmp_path / "run")
    (run_dir / "adapter" / "adapter_config.json").write_text("{not json")
    with pytest.raises(RunArtifactError, match="adapter_config.json: corrupted"):
        merge_run(run_dir, quiet=True)


def test_merge_refuses_an_adapter_of_another_base(lora_run: SharedRun, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    run_dir = lora_run.copy(tmp_path / "run")
    path = run_dir / "adapter" / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg["base_model_name_or_path"] = "meta-llama/Llama-3.1-8B"
    path.write_text(json.dumps(cfg))
    assert main(["merge", f"run={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert "base_model_name_or_path='meta-llama/Llama-3.1-8B' does not match the run's base model" in err
    assert not (run_dir / "merged").exists()


def test_merge_refuses_an_adapter_whose_shapes_do_not_fit(lora_run: SharedRun, tmp_path: Path) -> None:
    """Same recorded base name, different architecture: caught from the tensor shapes before loading."""
    from tuneforge.models import build_tiny_model
    from tuneforge.rundir import read_config

    run_dir = lora_run.copy(tmp_path / "run")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["model"]["tiny"]["intermediate_size"] = 192
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    other_base = build_tiny_model(read_config(run_dir).model.tiny)
    path = run_dir / "adapter" / "adapter_config.json"
    adapter_cfg = json.loads(path.read_text())
    adapter_cfg["base_model_name_or_path"] = str(other_base)
    path.write_text(json.dumps(adapter_cfg))
    with pytest.raises(RunArtifactError, match=r"does not fit the run's base model: .*mlp\.\w+_proj"):
        merge_run(run_dir, quiet=True)
    assert not (run_dir / "merged").exists()


@pytest.mark.slow
def test_merge_qlora_into_the_dequantized_base(tmp_path: Path) -> None:
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    run = load_run_config(["recipe=qlora-tiny", f"output_root={tmp_path}", "hparams.max_steps=5",
                           "hparams.eval_steps=null"])
    run_dir = Path(train(run, quiet=True)["run_dir"])
    info = merge_run(run_dir, quiet=True)
    assert info["dequantized_base"] and "de-quantized from 4-bit nf4 to float32" in info["note"]
    assert info["parity"]["passed"] and info["parity"]["max_abs_diff"] <= PARITY_ATOL["float32"]
    config = json.loads((run_dir / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
