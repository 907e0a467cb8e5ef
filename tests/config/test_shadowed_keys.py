"""Issue 26: a key the user sets must take effect. One shadowed by another setting (model.tiny over
model.name_or_path, max_steps over epochs, ...) is refused at compose time, in one line naming both keys,
before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError

SHADOWED = [
    # (recipe, the user's overrides, the ignored key, the key that wins)
    ("lora-tiny", ["model.name_or_path=HuggingFaceTB/SmolLM2-135M"], "model.name_or_path", "model.tiny"),
    ("qlora-tiny", ["model.name_or_path=/somewhere/else"], "model.name_or_path", "model.tiny"),
    ("lora-smollm2", ["model.name_or_path=org/other"], "model.name_or_path", "model.gguf"),
    ("lora-tiny", ["hparams.epochs=3"], "hparams.epochs", "hparams.max_steps"),
    ("lora-llama", ["hparams.max_steps=10", "hparams.epochs=2"], "hparams.epochs", "hparams.max_steps"),
    ("lora-tiny", ["optim.warmup_ratio=0.1", "optim.warmup_steps=5"], "optim.warmup_ratio", "optim.warmup_steps"),
    ("lora-smollm2", ["model.init=random", "model.gguf.file=other.gguf"],
     "model.gguf", "model.init"),
]


@pytest.mark.parametrize(("recipe", "overrides", "ignored", "winner"), SHADOWED)
def test_a_shadowed_key_is_refused_naming_both(recipe: str, overrides: list[str], ignored: str, winner: str,
                                               out_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", f"recipe={recipe}", f"output_root={out_root}", *overrides])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = err.strip()
    assert line.startswith("tuneforge: error:") and "\n" not in line and "Traceback" not in err
    assert ignored in line and winner in line and "ignored" in line
    assert not out_root.exists(), "a refused config writes nothing"


def test_the_override_counts_once_the_winner_is_removed() -> None:
    run = load_run_config(["recipe=lora-tiny", "model.tiny=null", "model.name_or_path=HuggingFaceTB/SmolLM2-135M"])
    assert run.model.tiny is None and run.model.name_or_path == "HuggingFaceTB/SmolLM2-135M"
    run = load_run_config(["recipe=lora-tiny", "hparams.epochs=3", "hparams.max_steps=-1"])
    assert run.hparams.epochs == 3 and run.hparams.max_steps == -1


def test_keys_nothing_shadows_pass() -> None:
    # the winner set by the user alone is what they asked for; a model group choice replaces the whole group
    assert load_run_config(["recipe=lora-tiny", "hparams.max_steps=5"]).hparams.max_steps == 5
    assert load_run_config(["recipe=lora-tiny", "model=smollm2-135m"]).model.tiny is None
    with pytest.raises(ConfigError, match="model.tiny"):
        load_run_config(["recipe=lora-tiny", "++model.name_or_path=x"])
