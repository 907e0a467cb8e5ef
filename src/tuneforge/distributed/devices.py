"""Where a run's processes compute, decided from the config (never by importing torch or probing a GPU)."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

from tuneforge.schema.run import RunConfig


def runs_on_cpu(run: RunConfig) -> bool:
    """Whether the training processes run on CPUs: decided by the config, never by probing a GPU, so the
    plan is the same wherever it is made. The local launcher runs here, so there it looks for a GPU device
    node (no torch import)."""
    device = run.launcher.resources().device
    if device != "here":
        return device == "cpu"
    # the local machine decides
    if _FOR_TARGET.get() and (run.model.tiny is None or getattr(run, "gpu", None) and run.gpu.name != "none"):
        return False  # `plan` describes the GPU machine a real-model recipe is for, not this host
    return not _gpu_visible_here()


_FOR_TARGET: contextvars.ContextVar[bool] = contextvars.ContextVar("tuneforge_plan_for_target", default=False)


@contextlib.contextmanager
def describing_target() -> Iterator[None]:
    """Within: a local launch of a real-model (or gpu=<type>) recipe is described for a GPU host, whatever
    this host has. ``plan`` uses it; ``train`` does not (on a CPU host it switches to CPU settings)."""
    token = _FOR_TARGET.set(True)
    try:
        yield
    finally:
        _FOR_TARGET.reset(token)


def _gpu_visible_here() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd"))
