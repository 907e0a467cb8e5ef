"""Issue 12 §4: secrets never reach a file. launcher.env values are secrets unless known safe; scripts pass
them by name; wandb does not record argv; tokenizer special tokens are not mistaken for credentials."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from tuneforge.backends.registry import get_backend
from tuneforge.config.compose import load_run_config
from tuneforge.finish import finish_run
from tuneforge.plan import make_plan
from tuneforge.rundir import read_config, write_config
from tuneforge.schema.store import SCHEMAS
from tuneforge.secrets import is_secret_key

PAT = "ghp_service-pat-value-0123456789"
HF = "hf_this-is-a-token-value-987654"


def _secret_free(path: Path, *secrets: str) -> None:
    for p in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        data = p.read_bytes()
        for s in secrets:
            assert s.encode() not in data, f"{s} written to {p}"


def test_launcher_env_values_never_reach_the_run_directory(tmp_path: Path) -> None:
    run = load_run_config(["recipe=lora-tiny", f"+launcher.env.MY_SERVICE_PAT={PAT}", "+launcher.env.OMP_NUM_THREADS=2",
                           f"run_dir={tmp_path}"])
    assert run.launcher.env["MY_SERVICE_PAT"] == PAT  # in memory, for the launched processes
    write_config(run, tmp_path)
    plan = make_plan(run, tmp_path)
    (tmp_path / "plan.txt").write_text(plan.render())
    finish_run(run, tmp_path, {"steps": 1}, 1.0, quiet=True)
    _secret_free(tmp_path, PAT)
    again = read_config(tmp_path)
    assert again.launcher.env == {"MY_SERVICE_PAT": "***REDACTED***", "OMP_NUM_THREADS": "2"}  # safe: kept


def test_scripts_export_secrets_by_name_and_the_node_gets_them(tmp_path: Path) -> None:
    from tuneforge.launch.accelerate import render_launch_script
    from tuneforge.launch.slurm import render_sbatch

    run = load_run_config(["recipe=lora-tiny", "launcher=accelerate", "launcher.cpu=true",
                           f"+launcher.env.HF_TOKEN={HF}", f"run_dir={tmp_path}"])
    script = render_launch_script(run, tmp_path, get_backend("native"))
    assert HF not in script and HF not in make_plan(run, tmp_path).render()
    assert "export HF_TOKEN\n" in script and "export ACCELERATE_USE_CPU=true" in script
    # the export block, run by bash: the variable passes through from the launching environment ...
    exports = "\n".join(ln for ln in script.splitlines() if ln.startswith(("export ", ": \"${")))
    ok = subprocess.run(["bash", "-c", f"set -eu\n{exports}\nbash -c 'echo \"$HF_TOKEN\"'"], capture_output=True,
                        text=True, env={"PATH": "/usr/bin:/bin", "HF_TOKEN": HF})
    assert ok.returncode == 0 and ok.stdout.strip() == HF
    # ... and a node where it is not set stops with the reason, instead of training without it
    missing = subprocess.run(["bash", "-c", f"set -eu\n{exports}\necho started"], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode != 0 and "HF_TOKEN is not set" in missing.stderr and "started" not in missing.stdout

    slurm = load_run_config(["recipe=lora-tiny", "launcher=slurm", f"+launcher.env.HF_TOKEN={HF}",
                             f"run_dir={tmp_path}"])
    sbatch = render_sbatch(slurm, tmp_path, get_backend("native"))
    assert HF not in sbatch and "export HF_TOKEN\n" in sbatch


def _schema_fields(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        t = hints[f.name]
        for arg in (t, *typing.get_args(t)):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                out += _schema_fields(arg, f"{prefix}{f.name}.")
    return out


def test_no_schema_field_is_mistaken_for_a_credential() -> None:
    names = {n for _, _, cls in SCHEMAS if dataclasses.is_dataclass(cls) for n in _schema_fields(cls)}
    assert any(n.endswith("tokens") for n in names)
    assert [n for n in names if is_secret_key(n.rsplit(".", 1)[-1])] == []


@pytest.mark.parametrize("key", ["pad_token", "eos_token", "bos_token", "unk_token", "sep_token", "mask_token",
                                 "cls_token"])
def test_special_token_fields_survive_the_config_round_trip(key: str, tmp_path: Path) -> None:
    run = load_run_config(["recipe=lora-tiny", "backend=axolotl",
                           f"+backend.additional_parameters.special_tokens.{key}='<|im_end|>'"])
    write_config(run, tmp_path)
    assert read_config(tmp_path).backend.additional_parameters["special_tokens"][key] == "<|im_end|>"


@pytest.mark.parametrize("key", ["hf_token", "api_key", "openai_api_key", "token", "access_token", "password",
                                 "MY_SERVICE_PAT", "client_secret"])
def test_credential_names_are_redacted(key: str) -> None:
    assert is_secret_key(key)


def test_wandb_does_not_record_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wandb stores the process's argv in its run files; a secret typed on the command line must not land there."""
    from tuneforge.tracking.trackers import WandbTracker

    run = load_run_config(["recipe=lora-tiny", "tracking=wandb", f"+launcher.env.MY_SERVICE_PAT={PAT}"])
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "argv", ["tuneforge", "train", "tracking=wandb", f"+launcher.env.MY_SERVICE_PAT={PAT}"])
    tracker = WandbTracker(run, tmp_path)
    tracker.log({"train/loss": 1.0}, 1)
    tracker.close()
    assert list((tmp_path / "wandb").rglob("*.wandb"))
    _secret_free(tmp_path / "wandb", PAT)
    assert sys.argv[-1].endswith(PAT)  # restored for the rest of the process
