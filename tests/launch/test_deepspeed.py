"""ds_config.json: DeepSpeed's own config class accepts every distributed option; refusals say what to change."""

from __future__ import annotations

import json

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.distributed.deepspeed import build_ds_config, validate_ds_config
from tuneforge.errors import ConfigError

OPTIONS = ["zero1", "zero2", "zero3", "zero3-offload"]


@pytest.mark.parametrize("recipe", ["full-llama", "lora-llama", "qlora-llama"])
@pytest.mark.parametrize("option", OPTIONS)
def test_deepspeed_accepts_every_option(option: str, recipe: str) -> None:
    overrides = [f"recipe={recipe}", "launcher=accelerate", "launcher.gpus_per_node=8", f"distributed={option}"]
    if recipe == "qlora-llama":
        overrides.append("backend=axolotl")  # the backend that loads QLoRA for ZeRO-3
        if option == "zero3-offload":  # 4-bit weights cannot be offloaded: refused, saying what to change
            with pytest.raises(ConfigError, match="distributed="):
                load_run_config(overrides)
            return
    run = load_run_config(overrides)
    cfg = build_ds_config(run)
    # the HF integration fills these from TrainingArguments: they must stay "auto" in the file
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):
        assert cfg[key] == "auto"
    assert cfg["bf16"]["enabled"] == "auto" and cfg["zero_optimization"]["reduce_bucket_size"] == "auto"
    ds = validate_ds_config(cfg, run)
    assert ds.zero_optimization_stage == run.distributed.zero_stage
    assert ds.world_size == 8 and ds.train_batch_size == run.hparams.micro_batch_size * run.hparams.grad_accumulation * 8
    if option == "zero3-offload":
        assert cfg["optimizer"]["type"] == "AdamW"  # ZeRO-Offload runs DeepSpeed's CPU Adam
        assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"
    else:
        assert "optimizer" not in cfg and cfg["zero_allow_untested_optimizer"] is True
    json.dumps(cfg)


def test_deepspeed_rejection_is_a_clear_error() -> None:
    run = load_run_config(["recipe=full-llama", "launcher=accelerate", "launcher.gpus_per_node=2",
                           "distributed=zero2", "+distributed.additional_parameters.zero_optimization.bogus=1"])
    with pytest.raises(ConfigError) as err:
        validate_ds_config(build_ds_config(run), run)
    assert "DeepSpeed rejects ds_config.json" in str(err.value) and "bogus" in str(err.value)


@pytest.mark.parametrize("overrides, needle", [
    (["recipe=full-llama", "distributed=zero3-offload", "optim=paged-adamw-8bit"],
     "only DeepSpeed's CPU Adam runs"),
    (["recipe=qlora-llama", "distributed=zero3-offload", "backend=axolotl"], "cannot be offloaded"),
    (["recipe=qlora-llama", "distributed=zero3"], "use distributed=zero2, or backend=axolotl"),
    (["recipe=full-llama", "distributed=zero2", "distributed.offload_params=true"], "needs ZeRO stage 3"),
    (["recipe=full-llama", "distributed=zero2", "+distributed.additional_parameters.train_batch_size=100"],
     "train_batch_size=100 != hparams.micro_batch_size (1) x hparams.grad_accumulation (16) x processes (4) = 64"),
    (["recipe=full-llama", "distributed=zero2",
      "+distributed.additional_parameters.train_micro_batch_size_per_gpu=3"], "disagrees with hparams.micro_batch_size"),
    (["recipe=full-llama", "distributed=none", "distributed.zero_stage=2"], "distributed=none shards nothing"),
])
def test_refusals(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config([*overrides, "launcher=accelerate", "launcher.gpus_per_node=4"])
    assert needle in str(err.value)
