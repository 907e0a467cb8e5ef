"""User errors: one clear message naming the key and the valid choices, non-zero exit, no traceback,
and no run directory created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.cli import main

CASES = [
    # (overrides, fragments the message must contain)
    (["optim.lrr=1e-4"], ["optim.lrr", "did you mean 'optim.lr'", "valid keys under 'optim'", "warmup_ratio"]),
    (["hparams.max_stepz=3"], ["hparams.max_stepz", "max_steps"]),
    (["+foo=1"], ["unknown config key 'foo'", "valid top-level keys"]),
    (["method.r=abc"], ["method.r", "could not be converted to Integer"]),
    (["hparams.packing=maybe"], ["hparams.packing", "not a valid bool"]),
    (["recipe=qlora-lama"], ["unknown recipe 'qlora-lama'", "qlora-llama", "lora-tiny"]),
    (["method=lorax"], ["unknown method 'lorax' (did you mean method=lora?)", "full", "qlora"]),
    (["optim.lr=0"], ["optim.lr=0.0 must be > 0"]),
    (["optim.lr=-3e-4"], ["optim.lr=-0.0003 must be > 0"]),
    (["method.r=0"], ["method.r=0 must be a positive integer"]),
    (["method.r=-8"], ["method.r=-8 must be a positive integer"]),
    (["hparams.micro_batch_size=0"], ["hparams.micro_batch_size=0 must be >= 1"]),
    (["recipe=qlora-tiny", "method.quantization.bits=null"], ["method.quantization.bits=None", "4, 8"]),
    (["recipe=qlora-tiny", "method.quantization.bits=3"], ["method.quantization.bits=3", "4, 8"]),
    (["recipe=qlora-tiny", "model.tiny.hidden_size=48", "model.tiny.num_attention_heads=4"],
     ["cannot be quantized", "multiple of 64"]),
    (["recipe=full-tiny", "method.quantization.bits=4"], ["method=qlora"]),
    (["backend.name=nope"], ["backend.name='nope'", "native"]),
    (["dataset.path=/no/such/data.jsonl"], ["dataset.path='/no/such/data.jsonl'", "file not found"]),
    (["optim.optimizer=adamw_bogus"], ["optim.optimizer='adamw_bogus'", "did you mean", "adamw_torch"]),
    (["optim.scheduler=cosin"], ["optim.scheduler='cosin'", "cosine"]),
    (["model.name_or_path=/no/such/model", "model.tiny=null"], ["/no/such/model", "config.json"]),
]


@pytest.mark.parametrize("overrides,fragments", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_config_is_one_clear_message(overrides, fragments, tmp_path: Path, capsys) -> None:
    out = tmp_path / "outputs"
    rc = main(["train", f"output_root={out}", *overrides])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.startswith("tuneforge: error:")
    for frag in fragments:
        assert frag in err, (frag, err)
    assert "Traceback" not in err
    assert not out.exists(), "a rejected config must not create a run directory"


def test_cli_subprocess_has_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "tuneforge.cli", "train", "optim.lrr=1",
                           f"output_root={tmp_path / 'o'}"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "optim.lrr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_command(capsys) -> None:
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_hub_model_unreachable_names_model_and_fix(monkeypatch) -> None:
    from tuneforge.config.compose import load_run_config
    from tuneforge.errors import ModelLoadError
    from tuneforge.models import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = load_run_config(["recipe=qlora-llama"])
    with pytest.raises(ModelLoadError) as exc:
        load_tokenizer(run)
    msg = str(exc.value)
    assert "meta-llama/Llama-3.1-8B" in msg
    assert "HF_TOKEN" in msg and "local directory" in msg
    # the environment set offline mode: the message says so, and how to turn it off
    assert "HF_HUB_OFFLINE=1 is set in this environment" in msg and "HF_HUB_OFFLINE=0" in msg


def test_make_sets_offline_for_tests_only() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    lines = [ln for ln in makefile.splitlines() if "HF_HUB_OFFLINE" in ln and not ln.startswith("#")]
    # the test targets export it; make setup uses it for the commands that prepare the packaged models and data
    # (a local GGUF file: nothing to fetch); train/eval/chat, which users run, never get it from make
    assert lines == ["test test-integration test-slow test-all bench gpu-check: export HF_HUB_OFFLINE ?= 1",
                     "\tHF_HUB_OFFLINE=1 $(BIN)/tuneforge data prepare recipe=lora-gemma3 >/dev/null",
                     "\tHF_HUB_OFFLINE=1 $(BIN)/tuneforge data prepare recipe=lora-smollm2 >/dev/null"]
    assert not [ln for ln in makefile.splitlines() if ln.startswith(("export HF_HUB", "HF_HUB_OFFLINE"))]


def test_secrets_never_reach_the_resolved_config(monkeypatch, tmp_path: Path) -> None:
    from tuneforge.config.compose import load_run_config
    from tuneforge.rundir import write_config

    secret = "hf_SECRETvalue123456"
    monkeypatch.setenv("HF_TOKEN", secret)
    run = load_run_config(["recipe=lora-tiny", f"tracking.project=proj-{secret}",
                           f"+backend.additional_parameters.hub_token={secret}"])
    write_config(run, tmp_path)
    text = (tmp_path / "config.yaml").read_text()
    assert secret not in text and "REDACTED" in text


@pytest.mark.parametrize("backend", ["native", "axolotl"])
def test_unreachable_model_fails_before_launch(backend: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """No traceback from a training subprocess: one message naming the model, and no run directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "outputs"
    rc = main(["train", "recipe=lora-llama", f"backend={backend}", f"output_root={out}"])
    err = capsys.readouterr().err
    assert rc == 2 and "meta-llama/Llama-3.1-8B" in err and "HF_TOKEN" in err and "Traceback" not in err
    assert not out.exists()


def test_train_help_lists_recipes(capsys) -> None:
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: tuneforge train" in out and "qlora-llama" in out and "lora-tiny" in out


def test_optimizer_and_scheduler_lists_match_transformers() -> None:
    """validate.py keeps static copies (plan must not import torch): they must match transformers."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from tuneforge.config.validate import OPTIMIZERS, SCHEDULERS

    assert set(OPTIMIZERS) == {o.value for o in OptimizerNames}
    assert set(SCHEDULERS) == {s.value for s in SchedulerType}
