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
    assert "exceeds launcher.gpu_memory_gb=24 (24 GiB)" in est.warnings[0] and "distributed=zero3" in est.warnings[0]


# --- regression cases from public reports ---------------------------------------------------------------------

# LLaMA-Factory #5977: full SFT of Llama-3-8B-Instruct (same shape as 3.1-8B) on 8x RTX 3090 (24 GB), ZeRO-3,
# cutoff_len 1024, per-device batch 1, fp16, gradient checkpointing (LLaMA-Factory's default).
LF_5977 = ["recipe=full-llama", "launcher=accelerate", "launcher.gpus_per_node=8", "hparams.seq_len=1024",
           "hparams.micro_batch_size=1", "hparams.grad_accumulation=2", "hparams.mixed_precision=fp16",
           "hparams.gradient_checkpointing=true"]


def test_lf5977_full_8b_zero3_on_24gb_does_not_fit_but_offload_does() -> None:
    z3 = _est(*LF_5977, "distributed=zero3")
    assert z3.total_gib > 24, "reported: ZeRO-3 without offload runs out of memory on 24 GB"
    # the pieces that a partition-only estimate leaves out, and that tip it over
    assert z3.components["ZeRO-3 live + prefetched parameters"] >= 1e9 * 2
    assert z3.components["fp32 gradients (optimizer step)"] == pytest.approx(4 * 1e9)  # sub_group_size
    assert any(k.startswith("allocator fragmentation") for k in z3.components)
    off = _est(*LF_5977, "distributed=zero3-offload")
    reported = 13e9 / GiB  # "about 13 GB per GPU" with ds_z3_offload_config.json (nvidia-smi: reserved memory)
    assert off.total_gib < 24
    assert 0.6 * reported < off.total_gib < 1.4 * reported


def test_lower_live_parameters_lowers_the_zero3_estimate() -> None:
    lower = _est(*LF_5977, "distributed=zero3",
                 "+distributed.additional_parameters={zero_optimization: {stage3_max_live_parameters: 100000000}}")
    assert lower.total < _est(*LF_5977, "distributed=zero3").total


@pytest.mark.parametrize(("batch", "fits"), [(1, True), (2, False)])
def test_lf6531_lora_8b_zero3_15k_tokens_on_45gb(batch: int, fits: bool) -> None:
    # LLaMA-Factory #6531: LoRA (all linear) on Llama-3.1-8B-Instruct, 4x L20 (45 GB), ZeRO-3, cutoff_len 15000,
    # bf16, gradient checkpointing: per-device batch 1 trains, batch 2 runs out of memory.
    est = _est("recipe=lora-llama", "launcher=accelerate", "launcher.gpus_per_node=4", "distributed=zero3",
               "hparams.seq_len=15000", f"hparams.micro_batch_size={batch}", "hparams.mixed_precision=bf16",
               "hparams.gradient_checkpointing=true")
    assert (est.total_gib <= 45) is fits, est.render()
