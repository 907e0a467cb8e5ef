"""Strategy x backend x launcher x distributed: every combination either plans, or is refused at compose time
with a message that says what to change."""

from __future__ import annotations

import itertools

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError
from tuneforge.plan import make_plan

METHODS = {"full": ["recipe=full-llama"], "lora": ["recipe=lora-llama"], "qlora": ["recipe=qlora-llama"]}
LAUNCHERS = {"local": ["launcher=local"],
             "accelerate-8gpu": ["launcher=accelerate", "launcher.gpus_per_node=8"],
             "accelerate-2cpu": ["launcher=accelerate", "launcher.gpus_per_node=2", "launcher.cpu=true"],
             "ray-4gpu": ["launcher=ray", "launcher.num_workers=4", "launcher.use_gpu=true"]}
DISTRIBUTED = ["none", "zero1", "zero2", "zero3", "zero3-offload"]
ADVICE = ("use ", "set ", "choose one of", "try ")


@pytest.mark.integration
def test_every_combination_plans_or_is_refused_with_advice() -> None:
    planned, refused = [], []
    for (m, mo), backend, (lname, lo), dist in itertools.product(METHODS.items(), ("native", "axolotl"),
                                                                 LAUNCHERS.items(), DISTRIBUTED):
        overrides = [*mo, f"backend={backend}", *lo, f"distributed={dist}"]
        try:
            run = load_run_config(overrides)
        except ConfigError as exc:
            text = str(exc)
            assert any(a in text for a in ADVICE), f"{overrides}: refusal gives no advice: {text}"
            refused.append((m, backend, lname, dist))
            continue
        plan = make_plan(run)
        assert plan.commands and plan.memory is not None
        if dist != "none":
            assert "ds_config.json" in plan.artifacts
        if backend == "axolotl":
            assert "axolotl.yaml" in plan.artifacts
        planned.append((m, backend, lname, dist))
    # the supported core: every method on both backends over 8 GPUs, plain DDP and ZeRO-2
    for m, b in itertools.product(METHODS, ("native", "axolotl")):
        for dist in ("none", "zero2"):
            assert (m, b, "accelerate-8gpu", dist) in planned
    # and the refusals this matrix is about
    assert ("full", "native", "local", "zero2") in refused  # ZeRO needs several processes
    assert ("lora", "native", "accelerate-2cpu", "zero2") in refused  # no ZeRO on CPU processes
    assert ("qlora", "native", "accelerate-8gpu", "zero3") in refused  # native QLoRA is per-GPU (device_map)
    assert ("qlora", "axolotl", "accelerate-8gpu", "zero3") in planned
    assert ("qlora", "axolotl", "accelerate-8gpu", "zero3-offload") in refused
    assert ("lora", "axolotl", "accelerate-2cpu", "none") in refused  # axolotl ranks need GPUs
    assert ("lora", "native", "accelerate-2cpu", "none") in planned  # real CPU DDP (test_multiprocess)
    # launcher=ray: plain DDP of the in-process backends (Ray Train workers run tuneforge.worker)
    for m in METHODS:
        assert (m, "native", "ray-4gpu", "none") in planned
        assert (m, "axolotl", "ray-4gpu", "none") in refused  # axolotl starts its own processes
        assert (m, "native", "ray-4gpu", "zero2") in refused  # no DeepSpeed on Ray's process group


@pytest.mark.parametrize("launcher", ["local", "accelerate"])
def test_tiny_cpu_recipes_plan_on_both_backends(launcher: str) -> None:
    for recipe, backend in itertools.product(("lora-tiny", "qlora-tiny", "full-tiny"), ("native", "axolotl")):
        run = load_run_config([f"recipe={recipe}", f"backend={backend}", f"launcher={launcher}"])
        assert make_plan(run).render()
