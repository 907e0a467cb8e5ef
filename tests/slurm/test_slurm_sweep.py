"""A sweep on Slurm: `launcher=slurm` turns into Hydra's submitit_slurm launcher (one job-array task per
trial); the results come back to the submitting process, which writes the table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tuneforge.job_index import read_index
from tuneforge.sweep.command import cmd_sweep
from tuneforge.sweep.preflight import plan_sweep

pytestmark = pytest.mark.slurm


def test_two_trial_sweep_as_a_slurm_job_array(slurm_cluster: str, out_root: Path) -> None:
    args = ["recipe=lora-tiny", "hparams.max_steps=3", "hparams.eval_steps=null", f"output_root={out_root}",
            "launcher=slurm", "launcher.cpus_per_task=1", "launcher.time=10", "optim.lr=1e-3,1e-2"]
    assert cmd_sweep(args) == 0
    (sweep_dir,) = (out_root / "sweeps" / "lora-tiny").iterdir()
    with (sweep_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["optim.lr"] for r in rows) == ["0.001", "0.01"]
    assert all(r["status"] == "completed" and float(r["eval_loss"]) > 0 for r in rows)
    assert (sweep_dir / ".submitit").is_dir()  # submitit's job folders: these trials ran as Slurm jobs
    entries = read_index(out_root)
    assert len(entries) == 2 and all(e["kind"] == "sweep-trial" and "_" in e["job_id"] for e in entries)
    assert {e["run_dir"] for e in entries} == {r["run_dir"] for r in rows}
    for r in rows:  # each trial trained in its task with the local launcher: launcher=slurm is not nested
        assert yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())["launcher"]["name"] == "local"


def test_sweep_on_slurm_maps_resources_and_refuses_multi_node(out_root: Path) -> None:
    plan = plan_sweep(["recipe=lora-tiny", f"output_root={out_root}", "launcher=slurm", "launcher.time=2:00:00",
                       "launcher.partition=gpu", "launcher.account=proj", "optim.lr=1e-3,1e-2"])
    o = plan.hydra_overrides
    assert "hydra/launcher=submitit_slurm" in o and "hydra.launcher.timeout_min=120" in o
    assert "hydra.launcher.partition=gpu" in o and "+hydra.launcher.additional_parameters.account=proj" in o
    assert not any(x.startswith("launcher") for x in o)  # each trial trains in its task (local launcher)
    multi = plan_sweep(["recipe=lora-llama", f"output_root={out_root}", "launcher=slurm", "launcher.gpus_per_node=4",
                        "optim.lr=1e-4,2e-4"]).hydra_overrides
    assert "hydra.launcher.gpus_per_node=4" in multi
    assert "launcher=accelerate" in multi and "launcher.gpus_per_node=4" in multi  # 4 processes per trial
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match="launcher.nodes=2"):
        plan_sweep(["recipe=lora-tiny", f"output_root={out_root}", "launcher=slurm", "launcher.nodes=2",
                    "optim.lr=1e-3,1e-2"])
