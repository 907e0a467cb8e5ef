"""Tiny end-to-end trainings with the native backend on CPU: loss goes down, artifacts load back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import read_metrics
from tuneforge.config.compose import load_run_config
from tuneforge.rundir import is_complete
from tuneforge.train import train

STEPS = 20


def _train(recipe: str, out_root: Path, *extra: str) -> tuple[dict, Path]:
    run = load_run_config([f"recipe={recipe}", f"output_root={out_root}", f"hparams.max_steps={STEPS}",
                           "hparams.eval_steps=10", *extra])
    summary = train(run, quiet=True)
    return summary, Path(summary["run_dir"])


def _assert_run_dir(run_dir: Path, weights: str) -> None:
    assert is_complete(run_dir)
    for name in ("config.yaml", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "RUNNING").exists()
    files = {p.name for p in (run_dir / weights).iterdir()}
    assert any(f.endswith(".safetensors") for f in files), files
    assert "tokenizer.json" in files
    recs = read_metrics(run_dir)
    train_recs = [r for r in recs if "loss" in r]
    assert len(train_recs) >= STEPS // 2
    for key in ("step", "loss", "lr", "tokens_per_s", "elapsed_s"):
        assert key in train_recs[-1], key
    assert train_recs[-1]["step"] == STEPS
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("train_loss", "eval_loss", "steps", "tokens", "wall_time_s", "versions", "git_commit"):
        assert key in summary, key
    assert summary["steps"] == STEPS and summary["tokens"] > 0
    assert summary["versions"]["transformers"]


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir) if "loss" in r]


def _assert_loss_goes_down(run_dir: Path) -> None:
    losses = _losses(run_dir)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.05, (first, last)


def _logits(model, run) -> torch.Tensor:
    from tuneforge.models import load_tokenizer

    tok = load_tokenizer(run)
    ids = tok.apply_chat_template([{"role": "user", "content": "Đà Lạt có biển không?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(input_ids=ids["input_ids"]).logits


def test_lora_tiny_trains_and_adapter_loads(out_root: Path) -> None:
    from peft import PeftModel

    from tuneforge.models import load_model

    summary, run_dir = _train("lora-tiny", out_root)
    _assert_run_dir(run_dir, "adapter")
    _assert_loss_goes_down(run_dir)
    assert summary["weights"] == "adapter"
    run = load_run_config(["recipe=lora-tiny"])
    base = load_model(run)
    base_logits = _logits(base, run)
    tuned = PeftModel.from_pretrained(load_model(run), run_dir / "adapter")
    tuned_logits = _logits(tuned, run)
    # the adapter is real: it changes the base's outputs
    assert (tuned_logits - base_logits).abs().max() > 1e-3
    cfg = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == run.method.r and cfg["peft_type"] == "LORA"


def test_qlora_tiny_trains_on_a_4bit_base(out_root: Path) -> None:
    import bitsandbytes as bnb
    from peft import PeftModel

    from tuneforge.models import load_model
    from tuneforge.strategies.registry import get_strategy

    summary, run_dir = _train("qlora-tiny", out_root)
    _assert_run_dir(run_dir, "adapter")
    _assert_loss_goes_down(run_dir)
    run = load_run_config(["recipe=qlora-tiny"])
    quant = get_strategy(run).quantization_config(run)
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    base = load_model(run, quantization_config=quant, device_map={"": "cpu"})
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in base.modules())
    assert n4 == 7 * run.model.tiny.num_hidden_layers
    tuned = PeftModel.from_pretrained(base, run_dir / "adapter")
    assert torch.isfinite(_logits(tuned, run)).all()


def test_full_tiny_trains_every_weight(out_root: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tuneforge.models import load_model

    summary, run_dir = _train("full-tiny", out_root)
    _assert_run_dir(run_dir, "model")
    _assert_loss_goes_down(run_dir)
    run = load_run_config(["recipe=full-tiny"])
    base = load_model(run)
    tuned = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    changed = [n for (n, p), (_, q) in zip(base.named_parameters(), tuned.named_parameters())
               if not torch.equal(p, q)]
    assert len(changed) == len(list(base.parameters()))


def test_failed_run_never_looks_complete(out_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    run = load_run_config(["recipe=lora-tiny", f"output_root={out_root}", f"dataset.path={bad}"])
    from tuneforge.errors import DataError

    with pytest.raises(DataError):
        train(run, quiet=True)
    # issue 12: a dataset problem is refused before a run directory exists (it used to leave a FAILED one)
    assert not (out_root / "lora-tiny").exists()


@pytest.mark.integration
def test_killed_run_does_not_look_complete(out_root: Path) -> None:
    """SIGKILL mid-training: the run directory keeps RUNNING and never gets summary.json."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "train", "recipe=lora-tiny",
                             f"output_root={out_root}", "hparams.max_steps=100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        deadline = time.time() + 120
        metrics = None
        while time.time() < deadline and metrics is None:
            found = list(out_root.glob("lora-tiny/*/metrics.jsonl"))
            metrics = found[0] if found and found[0].stat().st_size > 0 else None
            time.sleep(0.2)
        assert metrics is not None, "training never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_dir = metrics.parent
    assert (run_dir / "RUNNING").exists()
    assert not (run_dir / "summary.json").exists()
    assert not (run_dir / "adapter").exists()
    assert not is_complete(run_dir)
