"""The target accelerator a run is planned for (``gpu=a100-80g``): memory, peak throughput, price.

``plan`` answers "fits? how long? what cost?" for it (:mod:`tuneforge.verdict`). One YAML per GPU type in
``conf/gpu/``; ``gpu=none`` (the default) falls back to ``launcher.gpu_memory_gb`` and gives no time or cost.
Prices are typical on-demand cloud list prices per GPU-hour (2025) and move: set ``gpu.usd_per_hour``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


@dataclass
class GpuConfig:
    name: str = MISSING  # none | a100-80g | h100-80g | l4-24g | rtx4090-24g | ...
    memory_gb: Optional[float] = None  # usable GiB per GPU (what nvidia-smi reports as total)
    bf16_tflops: Optional[float] = None  # dense peak bf16 tensor TFLOP/s (no sparsity)
    usd_per_hour: Optional[float] = None  # $ per GPU-hour
    # model FLOP utilisation the time estimate assumes (nanoGPT's estimate_mfu; 0.3-0.5 is typical for
    # fine-tuning with FlashAttention/SDPA; QLoRA's de-quantisation makes it lower)
    mfu: float = 0.35


def check_gpu(run: object) -> Iterable[str]:
    g = run.gpu  # type: ignore[attr-defined]
    for key in ("memory_gb", "bf16_tflops", "usd_per_hour"):
        value = getattr(g, key)
        if value is None:
            continue
        if value < 0 or (value == 0 and key != "usd_per_hour"):
            yield f"gpu.{key}={value} must be > 0 (or null)"
    if not 0 < g.mfu <= 1:
        yield f"gpu.mfu={g.mfu} must be in (0, 1]: the fraction of peak FLOP/s the run achieves (typical 0.3-0.5)"


def target_memory_gb(run: object) -> tuple[float | None, str]:
    """(usable GiB per GPU, where that number comes from): launcher.gpu_memory_gb, the user's own budget,
    wins over the named GPU type's memory."""
    limit = run.launcher.gpu_memory_gb  # type: ignore[attr-defined]
    if limit is not None:
        return float(limit), f"launcher.gpu_memory_gb={limit:g}"
    gpu = getattr(run, "gpu", None)
    if gpu is not None and gpu.memory_gb is not None:
        return float(gpu.memory_gb), f"gpu={gpu.name}"
    return None, ""
