"""Issue 22 §4 / issue 26: what Hydra's grammar refuses, or a user types by habit, is one line saying what to do."""

from __future__ import annotations

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError


@pytest.mark.parametrize("override,says", [
    ("+backend.additional_parameters.eos_token=<|im_end|>",
     r"cannot parse the override .*'<' is not allowed unquoted.*eos_token=\"<\|im_end\|>\""),
    ("name=Đà-Lạt", r"cannot parse the override 'name=Đà-Lạt' \('Đ' is not allowed unquoted\)"),
    ("hparams.seq_len=(1", "cannot parse the override"),
    ("recipe=null", "a config group was given null"),
    ("~optim.lr", r"'~optim.lr' deletes optim.lr .* set it instead"),
    ("~hparams.seq_len=7", "deletes hparams.seq_len"),
])
def test_one_line_instead_of_hydras_exception(override: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        load_run_config(["recipe=lora-tiny", override])
    assert "Exception" not in str(info.value) and "Traceback" not in str(info.value)


def test_a_quoted_value_passes_the_grammar() -> None:
    run = load_run_config(["recipe=lora-tiny", '+backend.additional_parameters.eos_token="<|im_end|>"'])
    assert run.backend.additional_parameters["eos_token"] == "<|im_end|>"


def test_run_latest_looks_under_output_root(tmp_path) -> None:
    from tuneforge.errors import RunArtifactError
    from tuneforge.evaluation.run_args import parse_run_args

    with pytest.raises(RunArtifactError, match=f"run=latest: no complete run under {tmp_path}/"):
        parse_run_args("eval", ["run=latest", f"output_root={tmp_path}"], {})
