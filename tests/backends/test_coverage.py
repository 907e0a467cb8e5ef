"""Issue 12 §6: every training setting is mapped by each backend or listed as not applicable with a reason;
a changed setting a backend cannot honour is refused with that reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.backends.axolotl import build_axolotl_config
from tuneforge.backends.coverage import coverage, settings_fields
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError


@pytest.mark.parametrize("backend", ["native", "axolotl"])
def test_every_setting_is_mapped_or_listed_with_a_reason(backend: str) -> None:
    table = coverage(backend)
    fields = settings_fields()
    assert len(fields) > 40
    missing = [f for f in fields if f not in table]
    assert not missing, f"backend={backend} does not say what it does with: {missing}"
    for key, what in table.items():
        assert what == "mapped" or what.startswith("mapped (") or \
            (what.startswith(("n/a: ", "unsupported: ")) and len(what.split(": ", 1)[1]) > 10), (key, what)


def _axolotl(*overrides: str) -> dict:
    run = load_run_config(["recipe=lora-tiny", "backend=axolotl", *overrides])
    return build_axolotl_config(run, Path("/tmp/run"), base_model="/m", data={"train": "t", "val": "v"})


def test_axolotl_maps_what_it_used_to_ignore() -> None:
    assert _axolotl("hparams.dataloader_num_workers=3")["dataloader_num_workers"] == 3
    with pytest.raises(ConfigError, match=r"tracking.tags=\['a'\] has no effect with backend=axolotl"):
        load_run_config(["recipe=lora-tiny", "backend=axolotl", "tracking=wandb", "tracking.tags=[a]"])
    with pytest.raises(ConfigError, match="model.dtype=bfloat16: axolotl loads the base in its training precision"):
        load_run_config(["recipe=lora-tiny", "backend=axolotl", "model.dtype=bfloat16", "hparams.mixed_precision=no"])
    # the GPU recipes agree with themselves (bf16 weights, bf16 training)
    assert load_run_config(["recipe=lora-llama", "backend=axolotl"]).model.dtype == "bfloat16"
