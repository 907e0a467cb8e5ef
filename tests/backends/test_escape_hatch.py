"""Issue 12 §6: the escape hatch is checked against the target's own fields; keys tuneforge models are refused
naming the tuneforge key; a hatch list extends tuneforge's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.backends.axolotl import PLUGIN, build_axolotl_config, validate_axolotl_config
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError

HATCH = "+backend.additional_parameters"


def test_native_typo_is_refused_with_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"neftune_noise_alpah is not a field of TRL's SFTConfig "
                                          r"\(did you mean 'neftune_noise_alpha'\?\)"):
        load_run_config(["recipe=lora-tiny", f"{HATCH}.neftune_noise_alpah=5"])
    run = load_run_config(["recipe=lora-tiny", f"{HATCH}.neftune_noise_alpha=5"])
    assert run.backend.additional_parameters == {"neftune_noise_alpha": 5}


@pytest.mark.parametrize("backend, key, owner", [
    ("native", "learning_rate=1e-3", "optim.lr"),
    ("native", "max_length=64", "hparams.seq_len"),
    ("axolotl", "sequence_len=64", "hparams.seq_len"),
    ("axolotl", "learning_rate=1e-3", "optim.lr"),
    ("axolotl", "lora_r=4", "method.r"),
])
def test_modeled_keys_are_refused_naming_the_tuneforge_key(backend: str, key: str, owner: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key.split('=')[0]} is set by tuneforge from {owner}"):
        load_run_config(["recipe=lora-tiny", f"backend={backend}", f"{HATCH}.{key}"])


def test_axolotl_plugins_extend_tuneforges_own() -> None:
    liger = "axolotl.integrations.liger.LigerPlugin"
    run = load_run_config(["recipe=lora-tiny", "backend=axolotl", f"{HATCH}.plugins=[{liger}]"])
    cfg = build_axolotl_config(run, Path("/tmp/run"), base_model="/m", data={"train": "t", "val": "v"})
    assert cfg["plugins"] == [PLUGIN, liger]


@pytest.mark.axolotl
def test_axolotl_typo_is_refused_against_axolotls_schema() -> None:
    run = load_run_config(["recipe=lora-tiny", "backend=axolotl", f"{HATCH}.lora_target_lienar=true"])
    cfg = build_axolotl_config(run, Path("/tmp/run"), base_model="/m", data={"train": "t", "val": "v"})
    with pytest.raises(ConfigError, match=r"lora_target_lienar is not a field of axolotl's config schema "
                                          r"\(did you mean 'lora_target_linear'\?\)"):
        validate_axolotl_config(cfg, normalize=False)


@pytest.mark.axolotl
def test_axolotl_validator_warnings_reach_the_plan() -> None:
    from tuneforge.plan import make_plan, validate_plan

    run = load_run_config(["recipe=lora-llama", "backend=axolotl", "launcher=slurm", "launcher.gpus_per_node=1",
                           "hparams.mixed_precision=bf16", "hparams.packing=true", "model.attn_implementation=sdpa"])
    plan = make_plan(run)
    validate_plan(plan)
    assert any("axolotl: sample_packing & torch sdpa with bf16" in w for w in plan.warnings), plan.warnings
    assert "# WARNINGS" in plan.render()
