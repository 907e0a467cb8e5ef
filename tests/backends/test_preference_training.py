"""Preference training on the tiny random model, in seconds: TRL's DPO loss goes down, ORPO / KTO / SimPO
train, a run starts from an earlier run's adapter and records it, and what a backend cannot honour is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError
from tuneforge.train import train

GOOD = "Dạ, hồ Xuân Hương ở trung tâm Đà Lạt."
BAD = "Dạ, hồ ở Nha Trang, cạnh bãi tắm."
TINY = ["recipe=lora-tiny", "hparams.seq_len=96", "dataset.system_prompt=null", "dataset.heldout=null",
        "hparams.max_eval_samples=2", "hparams.logging_steps=1", "eval.probes=false", "eval.max_new_tokens=8"]


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Hồ {i} ở đâu?", "chosen": GOOD, "rejected": BAD},
                                      ensure_ascii=False) + "\n" for i in range(12)), encoding="utf-8")
    return src


def _pref(pairs: Path, out: Path, *extra: str) -> list[str]:
    return [*TINY, "dataset=dalat-pairs", f"dataset.path={pairs}", f"dataset.name=pairs-{pairs.parent.name}",
            f"output_root={out}", *extra]


def test_dpo_loss_goes_down(pairs: Path, out_root: Path) -> None:
    summary = train(load_run_config(_pref(pairs, out_root, "objective=dpo", "hparams.max_steps=8",
                                          "hparams.micro_batch_size=8", "optim.lr=5e-2",
                                          "objective.beta=0.5")), quiet=True)
    assert summary["objective"] == "dpo" and summary["steps"] == 8
    assert summary["first_loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy == reference at step 1
    assert summary["last_loss"] < 0.5 * summary["first_loss"]
    assert (Path(summary["run_dir"]) / "adapter" / "adapter_model.safetensors").is_file()
    # eval: TRL's implicit reward on the held-out pairs, the reference being the same model with the adapter off
    from tuneforge.evaluation.runner import evaluate_run

    results = evaluate_run(Path(summary["run_dir"]), quiet=True)
    tuned = results["preference"]["tuned"]["test"]
    assert tuned["n"] >= 1 and results["reward_accuracy"] == 100.0 and results["reward_margin"] > 0
    assert "## Preference pairs (held out)" in (Path(summary["run_dir"]) / "report.md").read_text(encoding="utf-8")


def _last(run_dir: str, key: str) -> float:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r[key] for r in rows if r.get("event") == "train" and key in r][-1]


def test_sft_weight_keeps_the_chosen_answers_likely(pairs: Path, out_root: Path) -> None:
    # the same aggressive DPO run twice: with the NLL term on the chosen side (RPO), the chosen answers end up
    # more likely than without it, where DPO is free to push chosen and rejected down together
    common = ["objective=dpo", "hparams.max_steps=8", "hparams.micro_batch_size=8", "optim.lr=5e-2",
              "objective.beta=0.5"]
    plain = train(load_run_config(_pref(pairs, out_root / "plain", *common)), quiet=True)
    rpo = train(load_run_config(_pref(pairs, out_root / "rpo", *common, "objective.sft_weight=1.0")), quiet=True)
    assert _last(rpo["run_dir"], "logps/chosen") > _last(plain["run_dir"], "logps/chosen")
    assert _last(rpo["run_dir"], "rewards/margins") > 0


@pytest.mark.parametrize("objective", [["objective=orpo"], ["objective=kto"],
                                       ["objective=dpo", "objective.loss_type=simpo"],
                                       ["objective=dpo", "objective.loss_type=ipo"]])
def test_other_preference_objectives_train(objective: list[str], pairs: Path, out_root: Path) -> None:
    summary = train(load_run_config(_pref(pairs, out_root, *objective, "hparams.max_steps=2",
                                          "hparams.micro_batch_size=4")), quiet=True)
    assert summary["steps"] == 2 and summary["last_loss"] == summary["last_loss"]  # finite, not NaN


def test_a_run_starts_from_an_earlier_run_and_records_it(pairs: Path, out_root: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    sft = train(load_run_config([*TINY, "dataset=sample-chat", "hparams.max_steps=2", f"output_root={out_root}"]),
                quiet=True)
    run = load_run_config(_pref(pairs, out_root, "objective=dpo", "hparams.max_steps=2", "init.run=latest",
                                "init.recipe=lora-tiny", f"init.root={out_root}", "name=dpo-tiny"))
    assert run.init.run == str(Path(sft["run_dir"]).resolve())
    summary = train(run, quiet=True)
    assert summary["parent"] == run.init.run
    from tuneforge.rundir import read_config

    assert read_config(Path(summary["run_dir"])).init.run == run.init.run
    # the starting weights are the parent's: base + SFT adapter merged, so the DPO reference is the SFT model
    import torch

    from tuneforge.backends.preference import merged_parent
    from tuneforge.evaluation.artifacts import load_base, open_run

    parent = merged_parent(Path(run.init.run))
    base = load_base(open_run(summary["run_dir"]))
    for (name, a), (_, b) in zip(parent.state_dict().items(), base.state_dict().items()):
        assert torch.equal(a, b), name
    # and the eval names them so: the "base" side is the starting run, not the untrained model
    from tuneforge.evaluation.runner import _models

    with _models(open_run(summary["run_dir"])) as (base_desc, _b, tuned_desc, _t):
        assert f"lora-tiny/{Path(sft['run_dir']).name} (init.run, merged)" in base_desc
        assert tuned_desc.startswith(base_desc) and tuned_desc.endswith("+ adapter/")
    from tuneforge import cli

    assert cli.main(["runs", f"output_root={out_root}"]) == 0
    assert f"dpo <- lora-tiny/{Path(sft['run_dir']).name} (sft)" in capsys.readouterr().out


def test_init_run_is_checked(pairs: Path, out_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="init.run=latest: no finished run of lora-tiny"):
        load_run_config(_pref(pairs, out_root, "objective=dpo", "init.run=latest", "init.recipe=lora-tiny",
                              f"init.root={tmp_path / 'none'}"))
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run_config(_pref(pairs, out_root, "objective=dpo", f"init.run={tmp_path}"))


@pytest.mark.parametrize("extra, message", [
    (["objective=dpo", "objective.max_prompt_length=32"], "max_prompt_length=32 has no effect with backend=native"),
    (["objective=dpo", "hparams.packing=true"], "cannot pack them"),
    (["objective=dpo", "objective.reference=precomputed"], "nothing is saved by precomputing"),
    (["objective=orpo", "objective.reference=precomputed"], "uses no reference model"),
    (["objective=dpo", "objective.loss_type=kto"], "choose one of: sigmoid, ipo, hinge, robust, simpo"),
    (["objective=dpo", "objective.beta=0"], "objective.beta=0.0 must be > 0"),
    (["objective=kto", "objective.sft_weight=1"], "sft_weight applies to objective=dpo only"),
    (["objective=dpo", "objective.sft_weight=-1"], "must be >= 0"),
    (["objective=kto", "backend=axolotl"], "objective=kto is not trained by backend=axolotl"),
])
def test_refusals_at_compose_time(extra: list[str], message: str, pairs: Path, out_root: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_run_config(_pref(pairs, out_root, *extra))


def test_method_and_objective_compose() -> None:
    run = load_run_config(["method=lora", "objective=dpo", "dataset=dalat-pairs"])
    assert (run.method.name, run.objective.name, run.objective.loss, run.objective.needs_reference) == \
        ("lora", "dpo", "sigmoid", True)
    assert load_run_config([]).objective.name == "sft"
