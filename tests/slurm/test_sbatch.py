"""The Slurm launcher without a cluster: golden sbatch scripts, validation before submission, plan."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tuneforge.backends.registry import get_backend
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError
from tuneforge.launch.slurm import SlurmLauncher, parse_time_seconds, render_sbatch
from tuneforge.plan import make_plan

GOLDEN = Path(__file__).parent / "golden"
RUN_DIR = Path("/scratch/runs/example/2026-01-01_00-00-00")
PY = "launcher.python=/opt/venv/bin/python"

CASES = {
    # name -> overrides; regenerate with TUNEFORGE_UPDATE_GOLDEN=1 after an intended change
    "one-node-cpu": ["recipe=lora-tiny", "launcher=slurm", PY, "launcher.time=30:00"],
    "two-node-gpu": ["recipe=qlora-llama", "launcher=slurm", PY, "launcher.nodes=2", "launcher.gpus_per_node=8",
                     "launcher.partition=gpu", "launcher.time=08:00:00", "launcher.account=proj42",
                     "launcher.cpus_per_task=64", "launcher.mem=480G", "launcher.exclusive=true",
                     "launcher.nccl_env.NCCL_DEBUG=INFO", "+launcher.additional_parameters.mail-type=END",
                     "launcher.env_setup=[module load cuda/12.4]"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_sbatch(case: str) -> None:
    run = load_run_config(CASES[case])
    text = render_sbatch(run, RUN_DIR, get_backend(run.backend.name))
    path = GOLDEN / f"{case}.sbatch"
    if os.environ.get("TUNEFORGE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendered sbatch differs from {path} (TUNEFORGE_UPDATE_GOLDEN=1 rewrites it)"
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)  # the script is valid bash


def test_two_node_script_runs_accelerate_per_node() -> None:
    text = (GOLDEN / "two-node-gpu.sbatch").read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:8",
                 "#SBATCH --partition=gpu", "#SBATCH --account=proj42", "#SBATCH --time=08:00:00",
                 "#SBATCH --signal=USR1@300", "#SBATCH --requeue", "#SBATCH --mail-type=END",
                 '--machine_rank "$SLURM_NODEID"', '--num_machines "$SLURM_NNODES"',
                 "--num_processes $(( SLURM_NNODES * 8 ))", '--main_process_ip "$MASTER_ADDR"',
                 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1', '--config_file "$RUN_DIR/accelerate.yaml"',
                 'export NCCL_DEBUG="${NCCL_DEBUG:-INFO}"', "module load cuda/12.4"):
        assert line in text, line
    assert "ACCELERATE_USE_CPU" not in text
    assert "export ACCELERATE_USE_CPU=true" in (GOLDEN / "one-node-cpu.sbatch").read_text()


def _artifacts(overrides: list[str]) -> dict[str, str]:
    run = load_run_config(overrides)
    return SlurmLauncher().artifacts(run, RUN_DIR, get_backend(run.backend.name))


def test_accelerate_config_comes_from_the_accelerate_launcher() -> None:
    two = yaml.safe_load(_artifacts(CASES["two-node-gpu"])["accelerate.yaml"])
    assert (two["distributed_type"], two["num_machines"], two["num_processes"]) == ("MULTI_GPU", 2, 16)
    one = yaml.safe_load(_artifacts(CASES["one-node-cpu"])["accelerate.yaml"])
    assert (one["distributed_type"], one["num_processes"]) == ("NO", 1)
    # two CPU processes per node: real data parallel over gloo (MULTI_GPU + ACCELERATE_USE_CPU)
    cpu2 = yaml.safe_load(_artifacts([*CASES["one-node-cpu"], "launcher.processes_per_node=2"])["accelerate.yaml"])
    assert (cpu2["distributed_type"], cpu2["num_processes"]) == ("MULTI_GPU", 2)


def test_zero3_on_slurm_writes_ds_config_and_plan_shows_the_script() -> None:
    overrides = ["recipe=full-llama", "launcher=slurm", PY, "launcher.nodes=2", "launcher.gpus_per_node=8",
                 "distributed=zero3", "launcher.time=1-00:00:00"]
    files = _artifacts(overrides)
    acc = yaml.safe_load(files["accelerate.yaml"])
    assert acc["distributed_type"] == "DEEPSPEED" and acc["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"
    assert json.loads(files["ds_config.json"])["zero_optimization"]["stage"] == 3
    plan = make_plan(load_run_config(overrides), RUN_DIR).render()
    assert "#SBATCH --nodes=2" in plan and f"# {RUN_DIR}/job.sbatch" in plan and f"sbatch {RUN_DIR}/job.sbatch" in plan


@pytest.mark.parametrize(("overrides", "message"), [
    (["launcher.nodes=0"], "launcher.nodes=0 must be >= 1"),
    (["launcher.gpus_per_node=8"], "CPU-only recipe"),
    (["launcher.time=8h"], "launcher.time='8h' is not a Slurm time limit"),
    (["launcher.time=00:04:00"], "launcher.signal_seconds=300 must be shorter than launcher.time"),
    (["launcher.mem=lots"], "launcher.mem='lots'"),
])
def test_invalid_resources_refused_before_submission(overrides: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(["recipe=lora-tiny", "launcher=slurm", f"output_root={tmp_path}", *overrides])
    assert message in str(err.value)
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused config"


def test_time_formats() -> None:
    assert parse_time_seconds("08:00:00") == 8 * 3600
    assert parse_time_seconds("2-00:00:00") == 2 * 86400
    assert parse_time_seconds("1-12") == 36 * 3600
    assert parse_time_seconds("30") == 1800
    assert parse_time_seconds("30:15") == 1815
    assert parse_time_seconds("UNLIMITED") is None
    for bad in ("8h", "1:2:3:4", "-1", "", "0"):
        with pytest.raises(ValueError):
            parse_time_seconds(bad)


def test_plan_commands_one_line_per_node() -> None:
    run = load_run_config(CASES["two-node-gpu"])
    cmds = SlurmLauncher().commands(run, RUN_DIR, get_backend(run.backend.name))
    assert cmds[0] == ["sbatch", str(RUN_DIR / "job.sbatch")]
    assert [c[c.index("--machine_rank") + 1] for c in cmds[1:]] == ["0", "1"]
    assert cmds[1][-3:] == ["-m", "tuneforge.worker", str(RUN_DIR)]


def test_without_slurm_client_the_error_says_how_to_get_one(out_root: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.errors import LaunchError
    from tuneforge.train import train

    monkeypatch.setenv("PATH", "/nonexistent")
    run = load_run_config(["recipe=lora-tiny", "launcher=slurm", f"output_root={out_root}"])
    with pytest.raises(LaunchError, match="'sbatch' not found") as err:
        train(run, quiet=True)
    assert "local-cluster.sh start" in str(err.value)
    (run_dir,) = (out_root / "lora-tiny").iterdir()
    assert (run_dir / "job.sbatch").is_file() and (run_dir / "FAILED").is_file()
    assert not (run_dir / "summary.json").exists()
