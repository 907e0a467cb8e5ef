"""Issue 12 §2, §5, §6: values that used to train to garbage, crash with a traceback, land in the wrong place or
be dropped silently are refused at compose time: exit 2, one message naming the key, no run directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError

CASES = [
    # non-finite values (they trained to NaN/garbage and exited 0)
    (["optim.lr=inf"], ["optim.lr=inf", "not a finite number"]),
    (["optim.weight_decay=inf"], ["optim.weight_decay=inf", "not a finite number"]),
    (["optim.max_grad_norm=nan"], ["optim.max_grad_norm=nan", "not a finite number"]),
    (["optim.adam_epsilon=nan"], ["optim.adam_epsilon=nan", "not a finite number"]),
    (["hparams.epochs=inf", "hparams.max_steps=-1"], ["hparams.epochs=inf", "not a finite number"]),
    # ranges that were tracebacks (or a FAILED run directory)
    (["optim.adam_beta1=2"], ["optim.adam_beta1=2.0 must be in [0, 1)"]),
    (["optim.adam_epsilon=0"], ["optim.adam_epsilon=0.0 must be > 0"]),
    (["hparams.dataloader_num_workers=-1"], ["hparams.dataloader_num_workers=-1 must be >= 0"]),
    (["method.target_modules=[nope]"], ["method.target_modules", "'nope'", "q_proj", "down_proj"]),
    (["model.tiny.hidden_size=0"], ["model.tiny.hidden_size=0 must be >= 1"]),
    (["model.tiny.num_hidden_layers=-1"], ["model.tiny.num_hidden_layers=-1 must be >= 1"]),
    (["model.tiny.num_attention_heads=0"], ["model.tiny.num_attention_heads=0 must be >= 1"]),
    (["model.tiny.num_key_value_heads=0"], ["model.tiny.num_key_value_heads=0 must be >= 1"]),
    # settings the Trainer ignored without a word
    (["hparams.save_total_limit=0"], ["hparams.save_total_limit=0", "keep every checkpoint"]),
    (["dataset.split.train=0.9", "dataset.split.val=0", "hparams.eval_steps=1"],
     ["hparams.eval_steps=1 needs a validation split", "dataset.split.val=0.0"]),
    (["hparams.max_eval_samples=0"], ["hparams.max_eval_samples=0 must be >= 1"]),
    # LoRA on chosen layers: out of range, none, or from the top of a model whose depth is unknown
    (["method.layers_to_transform=[0,5]"], ["method.layers_to_transform: [5] outside the 2 layers", "-2..-1"]),
    (["method.layers_to_transform=[]"], ["method.layers_to_transform=[] adapts no layer"]),
    (["model.tiny=null", "model.name_or_path=some/unknown-model", "method.layers_to_transform=[-1]"],
     ["counts from the top", "give 0-based indices"]),
    (["model.attn_implementation=bogus"], ["model.attn_implementation='bogus' is not valid", "sdpa", "eager"]),
    # '+' used to bypass the typo check: the key was accepted and dropped
    (["+optim.lrr=1e-4"], ["unknown config key 'optim.lrr'", "did you mean 'optim.lr'", "valid keys under 'optim'"]),
    (["+tracking.api_key=abcdef123"], ["unknown config key 'tracking.api_key'", "valid keys under 'tracking'"]),
    (["+model.tiny.hidden=3"], ["unknown config key 'model.tiny.hidden'", "hidden_size"]),
    # paths stay where the user put them
    (["name=../../../elsewhere"], ["name='../../../elsewhere' must be a single safe path component"]),
    (["name=a/b"], ["name='a/b' must be a single safe path component"]),
    (["output_root=/"], ["output_root='/' is the filesystem root"]),
]


@pytest.mark.parametrize("overrides,fragments", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_refused_at_compose_time(overrides, fragments, tmp_path: Path, capsys) -> None:
    out = tmp_path / "outputs"
    root = [] if any(o.startswith("output_root=") for o in overrides) else [f"output_root={out}"]
    rc = main(["train", "recipe=lora-tiny", "dataset=sample-chat", *root, *overrides])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("tuneforge: error:") and "Traceback" not in err
    for frag in fragments:
        assert frag in err, (frag, err)
    assert not out.exists(), "a rejected config must not create a run directory"


def test_relative_run_dir_may_not_escape_output_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    with pytest.raises(ConfigError, match=r"run_dir='../../etc/x' resolves to .*outside output_root"):
        load_run_config(["recipe=lora-tiny", "run_dir=../../etc/x"])
    assert not (tmp_path / "etc").exists()
    # inside output_root it is fine; an absolute run_dir is what the user typed, and is allowed anywhere
    assert load_run_config(["recipe=lora-tiny", "run_dir=outputs/mine"]).run_dir == str(work / "outputs" / "mine")
    assert load_run_config(["recipe=lora-tiny", f"run_dir={tmp_path / 'elsewhere'}"]).run_dir


def test_relative_run_dir_lies_under_output_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    work, root = tmp_path / "cwd", tmp_path / "root"
    work.mkdir()
    monkeypatch.chdir(work)
    run = load_run_config(["recipe=lora-tiny", f"output_root={root}", "run_dir=relsub"])
    assert run.run_dir == str(root / "relsub")  # config.yaml records where the run really is
    assert main(["plan", "recipe=lora-tiny", f"output_root={root}", "run_dir=relsub/deeper"]) == 0
    assert f"run directory: {root / 'relsub' / 'deeper'})" in capsys.readouterr().out
    assert not (work / "relsub").exists()
    # a path already leading into output_root from here (as `tuneforge runs` lists runs) names that directory
    monkeypatch.chdir(tmp_path)
    assert load_run_config(["recipe=lora-tiny", f"output_root={root}", "run_dir=root/x"]).run_dir == str(root / "x")


def test_flash_attention_refused_when_this_cpu_run_trains_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this run trains here, on CPU
    with pytest.raises(ConfigError, match="flash_attention_2 needs a CUDA GPU.*trains here on CPU"):
        load_run_config(["recipe=lora-tiny", "model.attn_implementation=flash_attention_2"])
    # a Slurm GPU job is another machine: the value is valid there
    run = load_run_config(["recipe=lora-llama", "launcher=slurm", "launcher.gpus_per_node=1",
                           "model.attn_implementation=flash_attention_2"])
    assert run.model.attn_implementation == "flash_attention_2"


def test_plus_keys_under_free_form_mappings_still_work() -> None:
    run = load_run_config(["recipe=lora-tiny", "+launcher.env.MY_VAR=1",
                           "+backend.additional_parameters.neftune_noise_alpha=5"])
    assert run.launcher.env == {"MY_VAR": "1"}
    assert run.backend.additional_parameters == {"neftune_noise_alpha": 5}
    assert os.environ.get("MY_VAR") is None


def test_an_adapter_larger_than_its_base_is_a_plan_warning() -> None:
    from tuneforge.plan import make_plan

    big = make_plan(load_run_config(["recipe=lora-tiny", "method.r=100000"]))
    assert any("larger than the base model" in w and "method.r=100000" in w for w in big.warnings), big.warnings
    assert "larger than the base model" in big.render()
    assert not any("larger than the base" in w for w in make_plan(load_run_config(["recipe=lora-tiny"])).warnings)
