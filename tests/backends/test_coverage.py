"""Issue 12 §6: every training setting is mapped by each backend or listed as not applicable with a reason;
a changed setting a backend cannot honour is refused with that reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.backends.axolotl import build_axolotl_config
from tuneforge.backends.coverage import settings_fields
from tuneforge.backends.registry import BACKENDS, get_backend
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_setting_is_mapped_or_listed_with_a_reason(backend: str) -> None:
    table = get_backend(backend).coverage()
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


@pytest.mark.parametrize("recipe,override,refused", [
    ("openai-gpt4o-mini", "optim.weight_decay=0.1", "optim.weight_decay=0.1 has no effect with backend=openai"),
    ("openai-gpt4o-mini", "hparams.max_steps=10", "hparams.max_steps=10 has no effect with backend=openai: a hosted "
                                                  "job trains whole epochs"),
    ("openai-gpt4o-mini", "tracking=wandb", "tracking=wandb: not wired for backend=openai"),
    ("openai-dpo-gpt4o-mini", "objective.sft_weight=1.0", "objective.sft_weight=1.0 has no effect with backend=openai"),
    ("embed-minilm", "hparams.packing=true", "hparams.packing=True has no effect with backend=sentence-transformers"),
    ("embed-minilm", "method=lora", "method.target_modules=.* names decoder"),
])
def test_the_hosted_and_embedding_tables_are_enforced(recipe: str, override: str, refused: str) -> None:
    with pytest.raises(ConfigError, match=refused):
        load_run_config([f"recipe={recipe}", override])


def test_a_format_the_backend_does_not_train_on_names_the_backends_that_do() -> None:
    with pytest.raises(ConfigError, match=r"dataset.format=triplets .* is not a format backend=native trains on "
                                          r"\(causal-lm: .*\); use backend=sentence-transformers"):
        load_run_config(["recipe=lora-tiny", "dataset.format=triplets"])
    with pytest.raises(ConfigError, match="dataset.format=sharegpt .* backend=sentence-transformers"):
        load_run_config(["recipe=embed-minilm", "dataset.format=sharegpt"])
