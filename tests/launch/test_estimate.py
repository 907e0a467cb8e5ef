"""Memory estimate: the formulas' arithmetic (ZeRO paper, QLoRA, Korthikanti et al.) and the warning."""

from __future__ import annotations

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.estimate import KNOWN_SHAPES, GiB, estimate_memory


def _est(*overrides: str):
    return estimate_memory(load_run_config(list(overrides)))


def test_full_finetune_bytes_per_parameter() -> None:
    plain = _est("recipe=full-llama", "launcher=local", "distributed=none")
    p = plain.parameters
    # bf16 weights + bf16 grads + AdamW states in bf16 (no DeepSpeed): 2 + 2 + 4 bytes/param
    assert plain.components["weights"] == pytest.approx(2 * p)
    assert plain.components["gradients"] == pytest.approx(2 * p)
    assert plain.components["optimizer states"] == pytest.approx(4 * p)
    z3 = _est("recipe=full-llama", "launcher=accelerate", "launcher.gpus_per_node=8", "distributed=zero3")
    # ZeRO paper: (2 + 2 + 12) Ψ / N with stage 3
    per_param = (z3.components["weights"] + z3.components["gradients"] + z3.components["optimizer states"]) / p
    assert per_param == pytest.approx(16 / 8)
    z1 = _est("recipe=full-llama", "launcher=accelerate", "launcher.gpus_per_node=8", "distributed=zero1")
    assert z1.components["optimizer states"] == pytest.approx(12 * p / 8)
    assert z1.components["gradients"] == pytest.approx(2 * p)
    off = _est("recipe=full-llama", "launcher=accelerate", "launcher.gpus_per_node=8", "distributed=zero3-offload")
    assert off.components["optimizer states"] == 0 and off.cpu_offload_bytes > 0
    assert off.total < z3.total < z1.total < plain.total


def test_qlora_weights_and_lora_parameters() -> None:
    q = _est("recipe=qlora-llama")
    shape = KNOWN_SHAPES["meta-llama/Llama-3.1-8B"]
    # rank-16 LoRA on all 7 projections of 32 layers: r·(in+out) summed
    h, kv, f = 4096, 1024, 14336
    assert q.trainable == 16 * (2 * (h + h) + 2 * (h + kv) + 2 * (h + f) + (f + h)) * 32
    assert q.trainable == pytest.approx(41.9e6, rel=0.01)
    embed = 2 * shape.vocab * shape.hidden
    assert q.components["weights"] == pytest.approx((q.parameters - embed) * 4.127 / 8 + embed * 2 + q.trainable * 4)
    lora = _est("recipe=lora-llama")
    assert q.components["weights"] < lora.components["weights"] / 2.5


def test_gradient_checkpointing_shrinks_activations() -> None:
    on = _est("recipe=lora-llama")
    off = _est("recipe=lora-llama", "hparams.gradient_checkpointing=false")
    s, b, h, layers = 2048, 4, 4096, 32
    assert off.components["activations"] == pytest.approx(34 * s * b * h * layers)  # fused attention
    assert on.components["activations"] < off.components["activations"] / 8
    eager = _est("recipe=lora-llama", "hparams.gradient_checkpointing=false", "model.attn_implementation=eager")
    assert eager.components["activations"] == pytest.approx(s * b * h * (34 + 5 * 32 * s / h) * layers)


def test_warning_above_declared_gpu_memory() -> None:
    assert _est("recipe=qlora-llama", "launcher.gpu_memory_gb=80").warnings == []
    est = _est("recipe=full-llama", "launcher=local", "distributed=none", "launcher.gpu_memory_gb=24")
    assert est.total > 24 * GiB
    assert "exceeds launcher.gpu_memory_gb=24" in est.warnings[0] and "distributed=zero3" in est.warnings[0]
