"""Issue 26: an escape-hatch value is checked against the target field's own type at compose time (TRL's
SFTConfig / TrainingArguments for backend=native, axolotl's pydantic schema for backend=axolotl): one line
naming the key, the value and the expected type, exit 2, and no run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config

WRONG = [
    # (backend, the hatch key=value, what the message names as expected)
    ("native", "label_smoothing_factor=abc", "expected float"),
    ("native", "torch_compile=3", "expected bool"),
    ("native", "neftune_noise_alpha=[1,2]", "expected float or null"),
    ("native", "eval_do_concat_batches=maybe", "expected bool"),
    ("native", "dataset_kwargs=12", "expected dict"),
    ("axolotl", "neftune_noise_alpha=abc", "expected float or null"),
    ("axolotl", "lora_modules_to_save=3", "expected list[str] or null"),
]


@pytest.mark.parametrize(("backend", "setting", "expected"), WRONG)
@pytest.mark.parametrize("command", ["plan", "train"])
def test_a_hatch_value_of_the_wrong_type_is_one_line_before_any_run_dir(
        backend: str, setting: str, expected: str, command: str, out_root: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    key, value = setting.split("=", 1)
    rc = main([command, "recipe=lora-tiny", f"backend={backend}", f"output_root={out_root}",
               f"+backend.additional_parameters.{setting}", "hparams.max_steps=2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"backend.additional_parameters.{key}=" in err and expected in err
    assert value.strip("[]").split(",")[0] in err  # the value given
    assert not out_root.exists(), "refused before a run directory exists"


@pytest.mark.parametrize(("backend", "setting", "value"), [
    ("native", "label_smoothing_factor=0.1", 0.1),
    ("native", "label_smoothing_factor=1", 1),  # an int where a float goes is a float
    ("native", "lr_scheduler_kwargs={num_cycles: 2}", {"num_cycles": 2}),
    ("native", "hub_strategy=checkpoint", "checkpoint"),  # an enum's value
    ("axolotl", "neftune_noise_alpha=5", 5),
])
def test_values_of_the_right_type_pass(backend: str, setting: str, value: object) -> None:
    run = load_run_config(["recipe=lora-tiny", f"backend={backend}", f"+backend.additional_parameters.{setting}"])
    assert run.backend.additional_parameters[setting.split("=")[0]] == value
