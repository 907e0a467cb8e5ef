"""accelerate launcher: golden command lines, the files it writes, and the refusals of the launcher matrix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneforge.backends.registry import get_backend
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError
from tuneforge.launch.accelerate import AccelerateLauncher, accelerate_command, shell_join
from tuneforge.paths import project_root

PY = sys.executable
RUN = Path("/shared/runs/r1")


def _run(*extra: str):
    return load_run_config(["recipe=lora-llama", "launcher=accelerate", *extra])


def _commands(run) -> list[str]:
    return [shell_join(c) for c in AccelerateLauncher().commands(run, RUN, get_backend(run.backend.name))]


def test_golden_single_node_eight_gpus() -> None:
    run = _run("launcher.gpus_per_node=8")
    assert _commands(run) == [
        (f"{PY} -m accelerate.commands.launch --config_file /shared/runs/r1/accelerate.yaml "
         "-m tuneforge.worker /shared/runs/r1"),
    ]
    cfg = yaml.safe_load(AccelerateLauncher().artifacts(run, RUN, get_backend("native"))["accelerate.yaml"])
    assert (cfg["distributed_type"], cfg["num_processes"], cfg["num_machines"]) == ("MULTI_GPU", 8, 1)
    assert cfg["mixed_precision"] == "no" and cfg["use_cpu"] is False


def test_golden_two_nodes_zero3_axolotl() -> None:
    run = _run("launcher.gpus_per_node=8", "launcher.num_nodes=2", "launcher.main_process_ip=10.0.0.1",
               "launcher.main_process_port=29501", "distributed=zero3", "backend=axolotl",
               f"run_dir={RUN}")
    assert _commands(run) == [
        (f"{PY} -m accelerate.commands.launch --config_file /shared/runs/r1/accelerate.yaml --machine_rank 0 "
         "-m axolotl.cli.train /shared/runs/r1/axolotl.yaml"),
        (f"{PY} -m accelerate.commands.launch --config_file /shared/runs/r1/accelerate.yaml --machine_rank 1 "
         "-m axolotl.cli.train /shared/runs/r1/axolotl.yaml"),
    ]
    cfg = yaml.safe_load(AccelerateLauncher().artifacts(run, RUN, get_backend("axolotl"))["accelerate.yaml"])
    assert cfg["distributed_type"] == "DEEPSPEED"
    assert (cfg["num_processes"], cfg["num_machines"], cfg["main_process_ip"], cfg["main_process_port"]) == (
        16, 2, "10.0.0.1", 29501)
    assert cfg["deepspeed_config"] == {"deepspeed_config_file": "/shared/runs/r1/ds_config.json",
                                       "zero3_init_flag": True, "deepspeed_multinode_launcher": "standard"}
    assert "mixed_precision" not in cfg  # accelerate refuses it next to a DeepSpeed file


def test_accelerate_command_keeps_shell_variables_for_srun() -> None:
    """The builder the Slurm launcher can reuse: shell expressions stay unexpanded (and quoted)."""
    run = _run("launcher.gpus_per_node=4")
    argv = accelerate_command(run, "$RUN_DIR", get_backend("native"), num_machines="$SLURM_NNODES",
                              machine_rank="$SLURM_NODEID", main_process_ip="$MASTER_ADDR",
                              num_processes="$(( SLURM_NNODES * 4 ))")
    assert shell_join(argv) == (
        f'{PY} -m accelerate.commands.launch --config_file "$RUN_DIR/accelerate.yaml" '
        '--num_processes $(( SLURM_NNODES * 4 )) --num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID" '
        '--main_process_ip "$MASTER_ADDR" -m tuneforge.worker "$RUN_DIR"')


def test_launch_script_is_the_planned_command(tmp_path: Path) -> None:
    run = _run("launcher.gpus_per_node=2", "launcher.num_nodes=2", "launcher.main_process_ip=127.0.0.1",
               f"run_dir={tmp_path}")
    files = AccelerateLauncher().prepare(run, tmp_path, get_backend("native"))
    script = files["launch.sh"].read_text()
    assert f"cd {project_root()}" in script
    assert '--machine_rank "$NODE_RANK"' in script and "--config_file" in script
    assert subprocess.run(["bash", "-n", str(files["launch.sh"])], check=False).returncode == 0
    bad = subprocess.run(["bash", str(files["launch.sh"]), "2"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "not in 0..1" in bad.stderr


def test_cpu_processes_get_gloo_environment() -> None:
    run = _run("launcher.gpus_per_node=2", "launcher.cpu=true")
    script = AccelerateLauncher().artifacts(run, RUN, get_backend("native"))["launch.sh"]
    assert "export ACCELERATE_USE_CPU=true" in script and "export HF_HUB_OFFLINE=1" in script


@pytest.mark.parametrize("overrides, needle", [
    (["launcher=local", "distributed=zero2"], "use launcher=accelerate"),
    (["launcher=accelerate", "launcher.num_nodes=2", "run_dir=/x"], "launcher.main_process_ip"),
    (["launcher=accelerate", "launcher.node_rank=3"], "launcher.node_rank=3 must be in 0..0"),
    (["launcher=accelerate", "launcher.gpus_per_node=0"], "launcher.cpu=true"),
    (["launcher=accelerate", "launcher.rdzv_backend=zmq"], "choose one of: static, c10d"),
    (["launcher=accelerate", "launcher.cpu=true", "distributed=zero2"], "use distributed=none for CPU"),
    (["launcher=accelerate", "launcher.cpu=true", "hparams.mixed_precision=bf16"], "needs a GPU"),
])
def test_launcher_refusals(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(["recipe=lora-tiny", *overrides])
    assert needle in str(err.value)


def test_issue_multinode_command_gives_every_node_one_run_dir() -> None:
    """The per-node command from the docs composes as is; both nodes compute the same run directory."""
    from tuneforge.plan import make_plan

    common = ["recipe=full-llama", "distributed=zero3", "launcher.gpus_per_node=8", "launcher.num_nodes=2",
              "launcher.main_process_ip=10.0.0.1"]
    plans = [make_plan(load_run_config([*common, f"launcher.node_rank={k}"])) for k in (0, 1)]
    assert plans[0].run_dir == plans[1].run_dir and plans[0].run_dir.name.startswith("multinode-")
    other = make_plan(load_run_config([*common, "launcher.node_rank=0", "optim.lr=2e-5"]))
    assert other.run_dir != plans[0].run_dir, "another config must not share the directory"
