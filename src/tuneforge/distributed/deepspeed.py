"""DeepSpeed ZeRO: ``distributed=zero1|zero2|zero3|zero3-offload`` -> ``<run_dir>/ds_config.json``.

The JSON follows the transformers/accelerate integration (``HfTrainerDeepSpeedConfig``): every value the
Trainer knows is "auto" (batch sizes, gradient clipping, precision, bucket sizes that depend on the model's
hidden size), so the Trainer's arguments stay the single source of truth and the same file serves the native
backend (``SFTConfig(deepspeed=...)``) and axolotl (``deepspeed: ...``). What the Trainer cannot know is
explicit: the ZeRO stage, offload devices, communication overlap, saving 16-bit weights under ZeRO-3.

Checks (``check``) run at compose time; ``validate_ds_config`` runs DeepSpeed's own config class on the
file with the "auto" values filled in the way the Trainer fills them (deepspeed is imported lazily: its
import alone takes >10 s on CPU).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from tuneforge.schema.run import RunConfig

DS_CONFIG_NAME = "ds_config.json"
# optimizers DeepSpeed's CPU Adam can replace (ZeRO-Offload runs the optimizer step on the CPU)
OFFLOADABLE_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw_apex_fused", "adam")


def uses_deepspeed(run: RunConfig) -> bool:
    return run.distributed.zero_stage is not None


def world_size(run: RunConfig) -> int:
    """Total number of training processes the launcher starts (1 for the local launcher): its resources."""
    return run.launcher.resources().world_size


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def build_ds_config(run: RunConfig) -> dict[str, Any]:
    """The DeepSpeed JSON for a ZeRO option (see the module docstring for what is "auto")."""
    d = run.distributed
    stage = int(d.zero_stage)  # type: ignore[arg-type]
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": d.overlap_comm,
        "contiguous_gradients": d.contiguous_gradients,
        "reduce_bucket_size": "auto",
    }
    if stage in (1, 2):
        zero["allgather_partitions"] = True
        zero["allgather_bucket_size"] = d.allgather_bucket_size
        zero["reduce_scatter"] = True
    if stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1_000_000_000,
            "stage3_max_reuse_distance": 1_000_000_000,
            "sub_group_size": 1_000_000_000,
            "stage3_gather_16bit_weights_on_model_save": d.gather_16bit_weights_on_model_save,
        })
    if d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if d.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    cfg: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
                 "hysteresis": 2, "min_loss_scale": 1},
        "zero_optimization": zero,
        "steps_per_print": 1_000_000,  # the Trainer logs; DeepSpeed's own step prints would only add noise
        "wall_clock_breakdown": False,
    }
    if d.offload_optimizer:
        # ZeRO-Offload needs DeepSpeed's own (CPU) Adam: declare it here, so the Trainer creates it with its
        # own hyper-parameters ("auto") instead of handing DeepSpeed a torch optimizer it cannot offload.
        cfg["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                         "weight_decay": "auto"}}
    else:
        # the Trainer's optimizer (optim.optimizer) runs under ZeRO as a "client" optimizer
        cfg["zero_allow_untested_optimizer"] = True
    return deep_merge(cfg, d.additional_parameters)


def render_ds_config(run: RunConfig) -> str:
    return json.dumps(build_ds_config(run), indent=2) + "\n"


def check(run: RunConfig) -> Iterable[str]:
    """Refusals for the distributed group (every message says what to change)."""
    d = run.distributed
    if d.name == "none" and (d.zero_stage is not None or d.offload_optimizer or d.offload_params):
        yield "distributed=none shards nothing: pick distributed=zero1|zero2|zero3|zero3-offload for DeepSpeed"
        return
    if d.zero_stage is None:
        return
    if d.zero_stage not in (0, 1, 2, 3):
        yield f"distributed.zero_stage={d.zero_stage} is not a ZeRO stage; choose one of: 0, 1, 2, 3"
        return
    if d.offload_params and d.zero_stage != 3:
        yield (f"distributed.offload_params=true needs ZeRO stage 3 (distributed.zero_stage={d.zero_stage} "
               "keeps full parameters on every GPU); use distributed=zero3-offload")
    if d.offload_optimizer and d.zero_stage == 0:
        yield "distributed.offload_optimizer=true needs ZeRO stage 1, 2 or 3"
    if d.offload_optimizer and run.optim.optimizer not in OFFLOADABLE_OPTIMIZERS:
        yield (f"distributed={d.name} offloads the optimizer to the CPU, where only DeepSpeed's CPU Adam runs; "
               f"optim.optimizer={run.optim.optimizer!r} cannot: use optim=adamw (optim.optimizer=adamw_torch), "
               "or a distributed option without offload (zero2, zero3)")
    yield from _check_batch_arithmetic(run)


def _check_batch_arithmetic(run: RunConfig) -> Iterable[str]:
    """Explicit batch sizes in distributed.additional_parameters must agree with hparams and the world size:
    DeepSpeed asserts train_batch_size == micro_batch_per_gpu * gradient_accumulation * world_size."""
    extra, h = run.distributed.additional_parameters, run.hparams
    world = world_size(run)
    micro = extra.get("train_micro_batch_size_per_gpu", "auto")
    accum = extra.get("gradient_accumulation_steps", "auto")
    total = extra.get("train_batch_size", "auto")
    if micro not in ("auto", h.micro_batch_size):
        yield (f"distributed.additional_parameters.train_micro_batch_size_per_gpu={micro} disagrees with "
               f"hparams.micro_batch_size={h.micro_batch_size}; drop it (the Trainer fills \"auto\")")
    if accum not in ("auto", h.grad_accumulation):
        yield (f"distributed.additional_parameters.gradient_accumulation_steps={accum} disagrees with "
               f"hparams.grad_accumulation={h.grad_accumulation}; drop it (the Trainer fills \"auto\")")
    want = h.micro_batch_size * h.grad_accumulation * world
    if total not in ("auto", want):
        yield (f"distributed.additional_parameters.train_batch_size={total} != hparams.micro_batch_size "
               f"({h.micro_batch_size}) x hparams.grad_accumulation ({h.grad_accumulation}) x processes "
               f"({world}) = {want}; set train_batch_size to {want}, or change hparams so the product matches")


def fill_auto(cfg: dict[str, Any], run: RunConfig, *, hidden_size: int = 4096) -> dict[str, Any]:
    """Replace "auto" the way ``transformers.integrations.deepspeed.HfTrainerDeepSpeedConfig`` does for a
    Trainer built from this run (for validation; at run time the Trainer does it itself)."""
    h, o = run.hparams, run.optim
    world = world_size(run)
    bf16 = h.mixed_precision == "bf16" or (h.mixed_precision == "auto" and run.model.dtype == "bfloat16")
    fills: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": h.micro_batch_size,
        "gradient_accumulation_steps": h.grad_accumulation,
        "train_batch_size": h.micro_batch_size * h.grad_accumulation * world,
        "gradient_clipping": o.max_grad_norm,
        "bf16.enabled": bf16,
        "fp16.enabled": h.mixed_precision == "fp16",
        "zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
        "optimizer.params.lr": o.lr,
        "optimizer.params.betas": [o.adam_beta1, o.adam_beta2],
        "optimizer.params.eps": o.adam_epsilon,
        "optimizer.params.weight_decay": o.weight_decay,
    }
    out = copy.deepcopy(cfg)
    for dotted, value in fills.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and node.get(leaf) == "auto":
            node[leaf] = value
    left = [k for k, v in _walk(out) if v == "auto"]
    if left:
        raise ValueError(f"ds_config.json: no value to fill in for \"auto\" at {', '.join(left)}")
    return out


def _walk(d: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _walk(v, key + ".")
        else:
            yield key, v


def validate_ds_config(cfg: dict[str, Any], run: RunConfig, *, source: str = DS_CONFIG_NAME) -> Any:
    """Run DeepSpeed's own ``DeepSpeedConfig`` on the filled-in JSON, with the run's world size.

    DeepSpeedConfig reads the world size from the process group; outside a launched job there is none, so
    the two calls it makes are answered with the world size this launch will have (as in the job itself).
    Raises ConfigError naming the file and DeepSpeed's message.
    """
    from unittest import mock

    from deepspeed.runtime import config as ds_config_module

    from tuneforge.errors import ConfigError

    world = world_size(run)
    try:
        filled = fill_auto(cfg, run)
        with mock.patch.object(ds_config_module.dist, "get_rank", lambda *a, **k: 0), \
                mock.patch.object(ds_config_module.dist, "get_world_size", lambda *a, **k: world):
            return ds_config_module.DeepSpeedConfig(filled)
    except Exception as exc:  # noqa: BLE001 - DeepSpeed raises AssertionError / pydantic ValidationError / ValueError
        text = str(exc).strip().splitlines()
        raise ConfigError(f"DeepSpeed rejects {source} (distributed={run.distributed.name}, "
                          f"{world} processes): {' '.join(t.strip() for t in text[:4]) or type(exc).__name__}"
                          ) from None
