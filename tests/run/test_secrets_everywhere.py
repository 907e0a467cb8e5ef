"""Issue 26: a value under a secret-looking key, wherever it comes from (command line, launcher.env, the
escape hatch, a recipe file), never reaches disk or stdout: every file a plan, a tiny train with a checkpoint
and an eval leave behind is grepped, including training_args.bin (pickled by the Trainer itself) and the
private recipe copy under the cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.paths import cache_dir

HUB = "hf_hub-token-in-the-hatch-5a4f3e"
ENV = "sk-env-secret-value-77aa21"
RECIPE_SECRET = "recipe-file-api-key-c0ffee99"


def _leaks(root: Path, *secrets: str) -> list[str]:
    found = []
    for p in [p for p in root.rglob("*") if p.is_file()]:
        data = p.read_bytes()
        found += [f"{s} in {p}" for s in secrets if s.encode() in data]
    return found


def test_no_secret_reaches_any_file_or_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", "placeholder")  # the hatch's hub_token is handed to the hub client here
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.chdir(tmp_path)
    t0 = time.time() - 1
    recipe = tmp_path / "my-secret-recipe.yaml"
    recipe.write_text("# @package _global_\ndefaults:\n  - /recipe/lora-tiny\n  - _self_\n"
                      f"backend:\n  additional_parameters:\n    api_key: {RECIPE_SECRET}\n")
    out = tmp_path / "outputs"
    common = [f"recipe={recipe}", f"output_root={out}", f"+backend.additional_parameters.hub_token={HUB}",
              f"+launcher.env.MY_SERVICE_KEY={ENV}"]
    # api_key is not a TrainingArguments field: the plan refuses it, naming the key, and still leaks nothing
    assert main(["plan", *common]) == 2
    recipe.write_text("# @package _global_\ndefaults:\n  - /recipe/lora-tiny\n  - _self_\n"
                      f"launcher:\n  env:\n    RECIPE_PASSWORD: {RECIPE_SECRET}\n")
    assert main(["plan", *common]) == 0
    assert main(["train", *common, "hparams.max_steps=4", "hparams.save_steps=2", "hparams.eval_steps=null"]) == 0
    run_dir = next(out.glob("*/*/summary.json")).parent
    assert list(run_dir.glob("checkpoints/checkpoint-*/training_args.bin")), "no checkpoint was written"
    assert os.environ.get("HF_TOKEN") == HUB  # the hub client can still use it; the pickled arguments cannot
    assert main(["eval", f"run={run_dir}", "eval.max_samples=2", "eval.max_new_tokens=4"]) == 0
    printed = capsys.readouterr()
    assert not [s for s in (HUB, ENV, RECIPE_SECRET) if s in printed.out + printed.err]
    assert _leaks(out, HUB, ENV, RECIPE_SECRET) == []  # everything but the user's own recipe file
    copies = [d for d in (cache_dir() / "recipe-files").iterdir() if d.stat().st_mtime >= t0]
    assert copies and all(_leaks(d, RECIPE_SECRET) == [] for d in copies)  # the private copies this test made
    assert "***REDACTED***" in (out / run_dir.parent.name / "plan" / "plan.txt").read_text()


AXOLOTL_SECRETS = [
    ("+backend.additional_parameters.hub_token", "HF_TOKEN"),
    ("+backend.additional_parameters.wandb_api_key", "WANDB_API_KEY"),
    ("+backend.additional_parameters.hf_token", "HF_TOKEN"),
    ("+backend.additional_parameters.some_plugin.api_key", "environment"),
]


@pytest.mark.parametrize(("key", "var"), AXOLOTL_SECRETS)
@pytest.mark.parametrize("command", ["plan", "train"])
def test_axolotl_hatch_secret_is_refused_and_written_nowhere(key: str, var: str, command: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """axolotl reads its settings from axolotl.yaml in the run directory: a credential in the hatch would be
    written there in clear. It is refused at compose time, naming the variable to set instead."""
    secret = "hf_axolotl-hatch-secret-91b2c3"
    out = tmp_path / "outputs"
    rc = main([command, "recipe=lora-tiny", "backend=axolotl", f"output_root={out}", f"{key}={secret}",
               "hparams.max_steps=2"])
    printed = capsys.readouterr()
    assert rc == 2, printed.err
    assert key.lstrip("+") in printed.err and var in printed.err and "environment" in printed.err
    assert secret not in printed.out + printed.err
    assert _leaks(tmp_path, secret) == []  # nothing the command left behind holds it (nor is there a run dir)
    assert not list(out.rglob("axolotl.yaml"))
