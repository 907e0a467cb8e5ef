"""The accelerate launcher: ``accelerate launch`` on each node, one process per GPU, nodes joined at node 0.

Where vs how: this module decides how processes start; the backend only supplies the
per-process entry (``backend.command(run, run_dir)``: ``-m tuneforge.worker <run_dir>`` or
``-m axolotl.cli.train <run_dir>/axolotl.yaml``). What every node shares goes into
``<run_dir>/accelerate.yaml``; what differs per node (the machine rank) is one flag on that node's command.

Run directory files (written by ``prepare``, shown by ``plan``):
    accelerate.yaml   accelerate's config: distributed type, process/machine counts, rendezvous, DeepSpeed file
    ds_config.json    with distributed=zero*: DeepSpeed's JSON (tuneforge.distributed.deepspeed)
    launch.sh         ``launch.sh [node_rank]``: the environment and the exact command of one node; `train`
                      runs it, and on a cluster without Slurm each node runs it with its rank

:func:`accelerate_command` is the reusable builder (the Slurm launcher can run it inside ``srun`` with
``machine_rank="$SLURM_NODEID"``): any argument may be a shell expression, kept unexpanded.

On CPU (``launcher.cpu=true``): ``distributed_type: MULTI_GPU`` plus ``ACCELERATE_USE_CPU=true`` is the one
combination that gives real multi-process data parallel over gloo (``--cpu`` alone starts ONE process,
``MULTI_CPU`` expects mpirun, and without the variable each process trains its own unsynchronized copy).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tuneforge.distributed.deepspeed import DS_CONFIG_NAME, uses_deepspeed, world_size
from tuneforge.distributed.devices import runs_on_cpu
from tuneforge.errors import LaunchError
from tuneforge.paths import project_root
from tuneforge.rundir import WORKER_RESULT
from tuneforge.schema.components import LauncherBase
from tuneforge.schema.run import RunConfig

ACCELERATE_CONFIG_NAME = "accelerate.yaml"
LAUNCH_SCRIPT_NAME = "launch.sh"
TEMPLATE = Path("launchers") / "accelerate" / "node.sh"
RDZV_BACKENDS = ("static", "c10d", "etcd", "etcd-v2")
# environment every training process gets (axolotl's telemetry off; no tokenizer thread pools per rank)
BASE_ENV = {"AXOLOTL_DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}
# a shell variable (optionally followed by a path: "$RUN_DIR/axolotl.yaml") or a $(...) / $((...)) expression
_SHELL_EXPR = re.compile(r"^\$(\{?\w+\}?[\w./-]*|\(\(.*\)\)|\(.*\))$")


def process_env(run: RunConfig) -> dict[str, str]:
    """The environment the launch adds for its processes (launcher.env last, so the user wins)."""
    env = dict(BASE_ENV)
    if runs_on_cpu(run):
        env["ACCELERATE_USE_CPU"] = "true"  # gloo process group (see the module docstring)
        env["HF_HUB_OFFLINE"] = "1"  # CPU runs here train local tiny models; never wait on a hub
    env.update({k: str(v) for k, v in run.launcher.env.items()})
    return env


def accelerate_config(run: RunConfig, run_dir: Path) -> dict[str, Any]:
    """accelerate's YAML config (``accelerate launch --config_file``), shared by every node."""
    c = run.launcher
    procs = world_size(run)
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "num_machines": c.num_nodes,
        "num_processes": procs,  # accelerate counts processes over all machines
        "machine_rank": 0,  # each node's command passes its own --machine_rank
        "main_training_function": "main",
        "rdzv_backend": c.rdzv_backend,
        "same_network": c.same_network,
        "main_process_port": c.main_process_port,
        "use_cpu": False,  # see the module docstring: CPU data parallel is MULTI_GPU + ACCELERATE_USE_CPU
        "gpu_ids": "all",
        "downcast_bf16": "no",
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
    }
    if c.num_nodes > 1:
        cfg["main_process_ip"] = c.main_process_ip
    if uses_deepspeed(run):
        cfg["distributed_type"] = "DEEPSPEED"
        ds = {"deepspeed_config_file": str(run_dir / DS_CONFIG_NAME),
              "zero3_init_flag": run.distributed.zero_stage == 3}
        if c.num_nodes > 1:
            ds["deepspeed_multinode_launcher"] = "standard"  # torchrun on each node, not pdsh from node 0
        cfg["deepspeed_config"] = ds
        # accelerate refuses mixed_precision next to a DeepSpeed file: precision is the file's "auto"
    else:
        cfg["distributed_type"] = "MULTI_GPU" if procs > 1 else "NO"
        cfg["mixed_precision"] = "no"  # the Trainer applies hparams.mixed_precision itself
        cfg["dynamo_config"] = {} if c.dynamo_backend == "no" else {"dynamo_backend": c.dynamo_backend.upper()}
    return cfg


def render_accelerate_config(run: RunConfig, run_dir: Path) -> str:
    return yaml.safe_dump(accelerate_config(run, run_dir), sort_keys=False)


def accelerate_command(run: RunConfig, run_dir: Path | str, backend: Any, *, python: str | None = None,
                       config_file: Path | str | None = None, num_machines: int | str | None = None,
                       machine_rank: int | str | None = None, main_process_ip: str | None = None,
                       main_process_port: int | str | None = None,
                       num_processes: int | str | None = None) -> list[str]:
    """argv of one node's ``accelerate launch`` (the reusable part: the Slurm launcher calls it too).

    The config file carries what all nodes share; each keyword given here is added as a flag, which
    accelerate applies over the file. Values may be shell expressions (``"$SLURM_NODEID"``): they are kept
    as they are, and :func:`shell_join` leaves them for the shell to expand.
    """
    run_dir = Path(run_dir)
    argv = [python or sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(config_file or run_dir / ACCELERATE_CONFIG_NAME)]
    for flag, value in (("--num_processes", num_processes), ("--num_machines", num_machines),
                        ("--machine_rank", machine_rank), ("--main_process_ip", main_process_ip),
                        ("--main_process_port", main_process_port)):
        if value is not None:
            argv += [flag, str(value)]
    c = run.launcher
    if getattr(c, "max_restarts", 0):
        argv += ["--max_restarts", str(c.max_restarts), "--monitor_interval", str(c.monitor_interval)]
    return argv + [str(a) for a in backend.command(run, run_dir)]


def node_command(run: RunConfig, run_dir: Path, backend: Any, node_rank: int | str) -> list[str]:
    """One node's command: the shared config file plus this node's machine rank (single node: none)."""
    rank = node_rank if run.launcher.num_nodes > 1 else None
    return accelerate_command(run, run_dir, backend, machine_rank=rank)


def shell_word(arg: str) -> str:
    """Quote one argument for bash, leaving ``$VAR``, ``${VAR}``, ``$(...)``, ``$((...))`` to the shell."""
    if _SHELL_EXPR.match(arg):
        return arg if arg.startswith("$((") else f'"{arg}"'
    return shlex.quote(arg)


def shell_join(argv: Iterable[str]) -> str:
    return " ".join(shell_word(a) for a in argv)


def render_launch_script(run: RunConfig, run_dir: Path, backend: Any) -> str:
    """``<run_dir>/launch.sh [node_rank]`` from launchers/accelerate/node.sh: env + this node's command."""
    template = (project_root() / TEMPLATE).read_text()
    from tuneforge.secrets import export_by_name, is_safe_env

    secret = {k for k in run.launcher.env if not is_safe_env(k)}  # passed on by name, never written
    exports = "\n".join(export_by_name(k) if k in secret else f"export {k}={shlex.quote(v)}"
                         for k, v in process_env(run).items())
    cmd = node_command(run, run_dir, backend, "$NODE_RANK")
    if run.launcher.num_nodes == 1:
        cmd = node_command(run, run_dir, backend, 0)
    values = {
        "run_dir": shlex.quote(str(run_dir)),
        "project_root": shlex.quote(str(project_root())),
        "num_nodes": str(run.launcher.num_nodes),
        "exports": exports,
        "command": " \\\n  ".join(_flag_lines(cmd)),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


def _flag_lines(argv: list[str]) -> list[str]:
    """One flag with its value per line; the script entry (-m module args...) on the last line."""
    lines: list[list[str]] = [[]]
    for i, a in enumerate(argv):
        if a.startswith("--") or (a == "-m" and i > 2):
            lines.append([])
        lines[-1].append(shell_word(a))
    return [" ".join(ln) for ln in lines if ln]


class AccelerateLauncher(LauncherBase):
    name = "accelerate"

    def check(self, run: RunConfig) -> Iterable[str]:
        from tuneforge.distributed import deepspeed

        c = run.launcher
        if c.gpus_per_node < 1:
            yield (f"launcher.gpus_per_node={c.gpus_per_node} must be >= 1 (processes per node; on CPU set "
                   "launcher.cpu=true)")
        if c.num_nodes < 1:
            yield f"launcher.num_nodes={c.num_nodes} must be >= 1"
        elif not 0 <= c.node_rank < c.num_nodes:
            yield f"launcher.node_rank={c.node_rank} must be in 0..{c.num_nodes - 1} (launcher.num_nodes={c.num_nodes})"
        if c.num_nodes > 1 and not c.main_process_ip:
            yield (f"launcher.num_nodes={c.num_nodes} needs launcher.main_process_ip: the address of node 0 "
                   "that every node can reach (e.g. launcher.main_process_ip=10.0.0.1)")
        if not 0 < c.main_process_port < 65536:
            yield f"launcher.main_process_port={c.main_process_port} must be a TCP port (1..65535)"
        if c.rdzv_backend not in RDZV_BACKENDS:
            yield f"launcher.rdzv_backend={c.rdzv_backend!r} is not valid; choose one of: {', '.join(RDZV_BACKENDS)}"
        if c.max_restarts < 0:
            yield f"launcher.max_restarts={c.max_restarts} must be >= 0"
        if c.gpu_memory_gb is not None and c.gpu_memory_gb <= 0:
            yield f"launcher.gpu_memory_gb={c.gpu_memory_gb} must be > 0 (or null)"
        problem = c.resources().precision_problem(run.hparams.mixed_precision, "launcher.cpu=true")
        if problem:
            yield problem
        if c.cpu and uses_deepspeed(run):
            # checked here: the Trainer's CPU mode quietly replaces DeepSpeed by plain DDP, and axolotl
            # initializes DeepSpeed with NCCL; neither may pass for a ZeRO run
            yield (f"distributed={run.distributed.name} needs GPUs: with launcher.cpu=true the Trainer would run "
                   "plain data parallel instead of ZeRO; use distributed=none for CPU processes")
        yield from deepspeed.check(run)

    def artifacts(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, str]:
        """File name -> content, exactly as ``prepare`` writes them (what `plan` shows)."""
        from tuneforge.distributed.deepspeed import render_ds_config

        files = {ACCELERATE_CONFIG_NAME: render_accelerate_config(run, run_dir)}
        if uses_deepspeed(run):
            files[DS_CONFIG_NAME] = render_ds_config(run)
        files[LAUNCH_SCRIPT_NAME] = render_launch_script(run, run_dir, backend)
        return files

    def commands(self, run: RunConfig, run_dir: Path, backend: Any) -> list[list[str]]:
        """The command line of each node (what `plan` prints): ``accelerate launch`` with the node's rank."""
        return [node_command(run, run_dir, backend, rank) for rank in range(run.launcher.num_nodes)]

    def prepare(self, run: RunConfig, run_dir: Path, backend: Any, *, validate: bool = True) -> dict[str, Path]:
        """Write accelerate.yaml, ds_config.json (validated by DeepSpeed itself first) and launch.sh."""
        from tuneforge.rundir import atomic_write_text

        if uses_deepspeed(run) and validate:
            from tuneforge.distributed.deepspeed import build_ds_config, validate_ds_config

            validate_ds_config(build_ds_config(run), run)
        written = {}
        for name, content in self.artifacts(run, run_dir, backend).items():
            path = run_dir / name
            atomic_write_text(path, content)
            written[name] = path
        written[LAUNCH_SCRIPT_NAME].chmod(0o755)
        return written

    def launch(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, Any] | None:
        """Run this node's part: ``launch.sh <launcher.node_rank>`` (written by prepare, shown by plan)."""
        import json

        script = self.prepare(run, run_dir, backend)[LAUNCH_SCRIPT_NAME]
        rank = run.launcher.node_rank
        cmd = ["bash", str(script), str(rank)]
        from tuneforge.secrets import split_env

        # launch.sh exports launcher.env secrets by name: they reach it through this environment only
        env = {**os.environ, **split_env(run.launcher.env)[1]}
        proc = subprocess.run(cmd, cwd=project_root(), check=False, env=env)
        if proc.returncode != 0:
            raise LaunchError(f"node {rank}: {shell_join(cmd)} exited with status {proc.returncode}")
        if rank != 0:
            # node 0's `train` owns the run directory (summary.json); this node only ran its processes
            print(f"tuneforge: node {rank} finished its processes; node 0 writes {run_dir}/summary.json", flush=True)
            return {"submitted": True, "node_rank": rank, "run_dir": str(run_dir)}
        result_path = run_dir / WORKER_RESULT
        return json.loads(result_path.read_text()) if result_path.is_file() else None


def accelerate_view(run: RunConfig) -> RunConfig:
    """The run as ``accelerate launch`` starts its processes under another executor (one Slurm node, Ray's
    workers): the same :class:`~tuneforge.schema.launch.Resources`, in the accelerate launcher's fields."""
    import dataclasses

    from tuneforge.schema.launch import AccelerateLauncherConfig

    c, r = run.launcher, run.launcher.resources()
    view = AccelerateLauncherConfig(env=dict(c.env), gpu_memory_gb=c.gpu_memory_gb,
                                    gpus_per_node=r.processes_per_node, num_nodes=r.nodes,
                                    main_process_port=r.port or 29500, cpu=r.device == "cpu")
    return dataclasses.replace(run, launcher=view)
