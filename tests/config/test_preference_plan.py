"""plan for preference recipes: the 8B LoRA + DPO recipe fits a 24 GB GPU and says why no reference model is
loaded; a full fine-tune counts a frozen reference copy; precomputed log-probs count none."""

from __future__ import annotations

from tuneforge.config.compose import load_run_config
from tuneforge.estimate import estimate_memory


def test_dpo_llama_fits_24gb_without_a_reference_copy() -> None:
    run = load_run_config(["recipe=dpo-llama"])
    est = estimate_memory(run)
    assert run.gpu.memory_gb == 24 and est.total_gib <= 24
    assert "reference model (frozen copy)" not in est.components and "reference forward (logits)" in est.components
    assert any("adapter switched off" in a for a in est.assumptions)
    sft = estimate_memory(load_run_config(["recipe=dpo-llama", "objective=sft", "dataset=dalat-tourism"]))
    assert est.total_gib > sft.total_gib  # two sequences per pair and the reference forward cost memory


def test_full_dpo_counts_a_frozen_reference_and_precomputed_does_not() -> None:
    base = ["recipe=dpo-llama", "method=full", "gpu=h200-141g"]
    full = estimate_memory(load_run_config(base))
    assert full.components["reference model (frozen copy)"] == full.components["weights"]
    pre = estimate_memory(load_run_config([*base, "objective.reference=precomputed"]))
    assert "reference model (frozen copy)" not in pre.components
    orpo = estimate_memory(load_run_config([*base, "objective=orpo"]))
    assert not any(k.startswith("reference") for k in orpo.components)
