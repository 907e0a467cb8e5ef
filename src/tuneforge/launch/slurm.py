"""The Slurm launcher: one sbatch job per run; ``srun`` starts one task per node, each ``accelerate launch``.

Submission side (``tuneforge train launcher=slurm``): render ``launchers/slurm/job.sbatch`` into the run
directory as ``job.sbatch``, submit it with ``sbatch``, record the job in the jobs index (``tuneforge jobs``)
and return; with ``launcher.wait=true`` block until the job has finished.

Job side (``python -m tuneforge.launch.slurm_job job-start|job-end <run_dir>``, called by the script): see
:mod:`tuneforge.launch.slurm_job`, which also answers ``tuneforge jobs`` and ``cancel`` for Slurm jobs.

How the processes start is the accelerate launcher's business: this module maps its
fields onto an ``AccelerateLauncherConfig`` (:func:`accelerate_view`) and reuses that launcher's builders:
``accelerate.yaml`` (and ``ds_config.json`` for ZeRO) in the run directory, and the ``accelerate launch``
argv (:func:`tuneforge.launch.accelerate.accelerate_command`) with the Slurm values (``$SLURM_NNODES``,
``$SLURM_NODEID``, the first host of the allocation) left for the shell on the nodes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuneforge.errors import LaunchError
from tuneforge.launch.accelerate import accelerate_view
from tuneforge.launch.slurm_job import SCRIPT_NAME
from tuneforge.paths import project_root
from tuneforge.rundir import FAILED, SUMMARY
from tuneforge.schema.components import LauncherBase
from tuneforge.schema.run import RunConfig

TEMPLATE = Path("launchers") / "slurm" / "job.sbatch"
# [D-]HH:MM:SS and the shorter forms sbatch accepts (see `man sbatch`, --time)
_TIME = re.compile(r"^(?:(?P<d>\d+)-(?P<dh>\d{1,2})(?::(?P<dm>\d{1,2})(?::(?P<ds>\d{1,2}))?)?"
                   r"|(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2})"
                   r"|(?P<mm>\d+)(?::(?P<ss>\d{1,2}))?)$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                   "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"}


def parse_time_seconds(text: str) -> int | None:
    """Seconds in a Slurm time limit; None for INFINITE/UNLIMITED; ValueError for anything sbatch rejects."""
    t = text.strip()
    if t.upper() in ("INFINITE", "UNLIMITED"):
        return None
    m = _TIME.match(t)
    if not m or t in ("", "0"):
        raise ValueError(t)
    g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
    if "d" in g:
        return ((g["d"] * 24 + g["dh"]) * 60 + g.get("dm", 0)) * 60 + g.get("ds", 0)
    if "h" in g:
        return (g["h"] * 60 + g["m"]) * 60 + g["s"]
    return g["mm"] * 60 + g.get("ss", 0)


def processes_per_node(run: RunConfig) -> int:
    return run.launcher.resources().processes_per_node


def job_name(run: RunConfig) -> str:
    return run.launcher.job_name or f"tuneforge-{run.name}"


def accelerate_args(run: RunConfig, run_dir: Path, backend: Any) -> list[str]:
    """``accelerate launch`` arguments shared by every node (each node adds its ``--machine_rank``), ending
    with the backend's per-process entry. Shell variables are expanded in the batch script."""
    from tuneforge.launch.accelerate import accelerate_command

    argv = accelerate_command(accelerate_view(run), run_dir, backend, python="python",
                              num_machines="$SLURM_NNODES",
                              num_processes=f"$(( SLURM_NNODES * {processes_per_node(run)} ))",
                              main_process_ip="$MASTER_ADDR", main_process_port="$MASTER_PORT")
    assert argv[1:3] == ["-m", "accelerate.commands.launch"], argv[:3]
    return argv[3:]


def _bash_word(arg: str, run_dir: Path) -> str:
    """Quote for the script: paths in the run directory via "$RUN_DIR", shell expressions left to bash."""
    from tuneforge.launch.accelerate import shell_word

    if arg == str(run_dir) or arg.startswith(f"{run_dir}/"):
        return '"$RUN_DIR' + arg[len(str(run_dir)):] + '"'
    return shell_word(arg)


def sbatch_directives(run: RunConfig, run_dir: Path) -> list[str]:
    c = run.launcher
    d = [f"--job-name={job_name(run)}", f"--nodes={c.nodes}", "--ntasks-per-node=1"]
    if c.gpus_per_node:
        d.append(f"--gres=gpu:{c.gpus_per_node}")
    if c.cpus_per_task:
        d.append(f"--cpus-per-task={c.cpus_per_task}")
    if c.mem:
        d.append(f"--mem={c.mem}")
    d.append(f"--time={c.time}")
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(c, key):
            d.append(f"--{key}={getattr(c, key)}")
    if c.exclusive:
        d.append("--exclusive")
    if c.signal_seconds:
        d.append(f"--signal=USR1@{c.signal_seconds}")
    d.append("--requeue" if c.requeue else "--no-requeue")
    d += [f"--output={run_dir}/logs/slurm-%j.out", "--open-mode=append"]
    for key, value in c.additional_parameters.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            d.append(flag)
        elif value not in (None, False):
            d.append(f"{flag}={value}")
    return [f"#SBATCH {x}" for x in d]


def environment(run: RunConfig) -> list[tuple[str, str, bool]]:
    """(name, value, overridable): overridable presets keep a value already in the job's environment.
    The accelerate launcher's process environment (ACCELERATE_USE_CPU on CPU, launcher.env) comes last."""
    from tuneforge.launch.accelerate import process_env

    c = run.launcher
    env: list[tuple[str, str, bool]] = []
    if c.gpus_per_node:
        env += [(k, str(v), True) for k, v in c.nccl_env.items()]
    env.append(("TUNEFORGE_PREEMPTION", "1" if c.signal_seconds and c.requeue else "0", False))
    env += [(k, v, False) for k, v in process_env(accelerate_view(run)).items()]
    return env


def render_sbatch(run: RunConfig, run_dir: Path, backend: Any, python: str | None = None) -> str:
    c = run.launcher
    template = (project_root() / TEMPLATE).read_text()
    from tuneforge.secrets import export_by_name, is_safe_env

    exports = []
    for name, value, overridable in environment(run):
        if name in c.env and not is_safe_env(name):  # a secret: sbatch --export=ALL carries it, by name
            exports.append(export_by_name(name))
        elif overridable:
            exports.append(f'export {name}="${{{name}:-{value}}}"')
        else:
            exports.append(f"export {name}={shlex.quote(value)}")
    words = [_bash_word(a, run_dir) for a in accelerate_args(run, run_dir, backend)]
    # one flag (and its value) per line
    lines, cur = [], []
    for w in words:
        if w.startswith("--") and cur:
            lines.append(cur)
            cur = []
        if w == "-m" and cur:
            lines.append(cur)
            cur = []
        cur.append(w)
    lines.append(cur)
    values = {
        "job_name": job_name(run),
        "script": str(run_dir / SCRIPT_NAME),
        "directives": "\n".join(sbatch_directives(run, run_dir)),
        "run_dir": shlex.quote(str(run_dir)),
        "python": shlex.quote(python or c.python or sys.executable),
        "env_setup": "\n".join(c.env_setup) if c.env_setup else "# (no launcher.env_setup lines)",
        "exports": "\n".join(exports),
        "master_port": str(c.master_port),
        "launch_args": "\n".join("  " + " ".join(ln) for ln in lines),
    }

    def fill(m: re.Match) -> str:
        return values[m.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", fill, template)


# --- submission ----------------------------------------------------------------------------------------


def _slurm_cmd(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LaunchError(f"'{name}' not found: launcher=slurm needs the Slurm client commands on PATH "
                          "(and SLURM_CONF for a cluster that is not in /etc/slurm); for a local test "
                          "cluster: launchers/slurm/local-cluster.sh start")
    return path


def submit(script: Path, secret_env: dict[str, str] | None = None) -> str:
    """``sbatch`` the script; ``secret_env`` (launcher.env secrets) reaches the job through sbatch's default
    ``--export=ALL`` of this environment, so the script names those variables but never holds their values."""
    env = {**os.environ, **(secret_env or {})}
    proc = subprocess.run([_slurm_cmd("sbatch"), "--parsable", str(script)], check=False, capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        said = "\n".join("  " + ln for ln in (proc.stderr or proc.stdout).strip().splitlines())
        raise LaunchError(f"Slurm refused the job (sbatch exit {proc.returncode}); it said:\n{said}\n"
                          f"  script: {script}")
    return proc.stdout.strip().split(";")[0]


def job_state(job_id: str) -> tuple[str | None, str]:
    """(state, reason) from squeue; (None, "") once Slurm no longer knows the job; ("UNREACHABLE", error)
    when squeue itself failed (a busy or restarting controller), which says nothing about the job."""
    proc = subprocess.run([_slurm_cmd("squeue"), "-h", "-t", "all", "-j", job_id, "-o", "%T|%r"], check=False,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if "invalid job id" in proc.stderr.lower():
            return None, ""
        return "UNREACHABLE", proc.stderr.strip()
    line = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    if not line:
        return None, ""
    state, _, reason = line.partition("|")
    return state, reason


def wait_for_job(job_id: str, run_dir: Path, poll_s: float = 2.0, max_unreachable: int = 60) -> dict[str, Any]:
    """Block until the job has ended (requeues included); the job's own summary.json is the result."""
    state: str | None = "PENDING"
    unreachable = 0
    while state is not None and state not in TERMINAL_STATES:  # PENDING after a requeue: keep waiting
        time.sleep(poll_s)
        state, why = job_state(job_id)
        unreachable = unreachable + 1 if state == "UNREACHABLE" else 0
        if unreachable >= max_unreachable:
            raise LaunchError(f"lost contact with Slurm while waiting for job {job_id} ({why}); the job may "
                              f"still run: tuneforge jobs, or its logs in {run_dir / 'logs'}")
    summary_path = run_dir / SUMMARY
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    failed = run_dir / FAILED
    why = failed.read_text().strip() if failed.is_file() else f"job ended in state {state or 'unknown'}"
    raise LaunchError(f"Slurm job {job_id} failed: {why}\n  logs: {run_dir / 'logs'}")


class SlurmLauncher(LauncherBase):
    name = "slurm"
    runs_here = False  # the job runs on cluster nodes: the base model is checked there, not on this host

    def job_states(self, entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        from tuneforge.launch.slurm_job import job_states

        return job_states(entries)

    def cancel(self, run_dir: Path) -> str | None:
        from tuneforge.launch.slurm_job import cancel

        return cancel(run_dir)

    def check(self, run: RunConfig) -> Iterable[str]:
        c = run.launcher
        if c.nodes < 1:
            yield f"launcher.nodes={c.nodes} must be >= 1"
        if c.gpus_per_node < 0:
            yield f"launcher.gpus_per_node={c.gpus_per_node} must be >= 0 (0 = a CPU job)"
        if c.processes_per_node is not None and c.processes_per_node < 1:
            yield f"launcher.processes_per_node={c.processes_per_node} must be >= 1 (or null)"
        if c.gpus_per_node > 0 and run.model.tiny is not None:
            yield (f"launcher.gpus_per_node={c.gpus_per_node} requested for a CPU-only recipe (model "
                   f"'{run.model.name_or_path}' is a tiny local smoke-test model): set "
                   "launcher.gpus_per_node=0, or pick a GPU recipe such as recipe=lora-llama")
        try:
            limit = parse_time_seconds(c.time)
        except ValueError:
            limit = None
            yield (f"launcher.time={c.time!r} is not a Slurm time limit; use HH:MM:SS, D-HH:MM:SS, "
                   "MM or MM:SS (e.g. 08:00:00, 2-00:00:00, 30)")
        if c.signal_seconds < 0:
            yield f"launcher.signal_seconds={c.signal_seconds} must be >= 0 (0: no preemption signal)"
        elif limit is not None and c.signal_seconds and c.signal_seconds >= limit:
            yield (f"launcher.signal_seconds={c.signal_seconds} must be shorter than launcher.time={c.time} "
                   f"({limit} s): the checkpoint signal would come before training starts")
        if c.mem is not None and not _MEM.match(str(c.mem)):
            yield f"launcher.mem={c.mem!r} is not a Slurm memory size; use e.g. 64G, 500000M or 0 (all)"
        if c.cpus_per_task is not None and c.cpus_per_task < 1:
            yield f"launcher.cpus_per_task={c.cpus_per_task} must be >= 1 (or null)"
        if not 0 < c.master_port < 65536:
            yield f"launcher.master_port={c.master_port} must be a TCP port (1..65535)"
        problem = c.resources().precision_problem(run.hparams.mixed_precision, "launcher.gpus_per_node=0")
        if problem:
            yield problem
        if c.gpus_per_node == 0 and run.distributed.offload_optimizer:
            yield (f"distributed={run.distributed.name} on a CPU job (launcher.gpus_per_node=0): the model "
                   "already lives in CPU memory; use distributed=zero2 or zero3 (no offload)")
        from tuneforge.distributed import deepspeed

        yield from deepspeed.check(accelerate_view(run))

    def commands(self, run: RunConfig, run_dir: Path, backend: Any) -> list[list[str]]:
        """``sbatch <script>``, then the command each node's srun task runs (what `plan` prints)."""
        py = run.launcher.python or sys.executable
        head = [py, "-m", "accelerate.commands.launch"]
        args = accelerate_args(run, run_dir, backend)
        return [["sbatch", str(run_dir / SCRIPT_NAME)]] + [
            [*head, "--machine_rank", str(rank), *args] for rank in range(run.launcher.nodes)]

    def artifacts(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, str]:
        """File name -> content, exactly as ``prepare`` writes them (what `plan` shows)."""
        from tuneforge.distributed.deepspeed import DS_CONFIG_NAME, render_ds_config, uses_deepspeed
        from tuneforge.launch.accelerate import ACCELERATE_CONFIG_NAME, render_accelerate_config

        view = accelerate_view(run)
        files = {ACCELERATE_CONFIG_NAME: render_accelerate_config(view, run_dir)}
        if uses_deepspeed(view):
            files[DS_CONFIG_NAME] = render_ds_config(view)
        files[SCRIPT_NAME] = render_sbatch(run, run_dir, backend)
        return files

    def prepare(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, Path]:
        """Write accelerate.yaml, ds_config.json (checked by DeepSpeed itself first) and job.sbatch."""
        from tuneforge.distributed.deepspeed import build_ds_config, uses_deepspeed, validate_ds_config
        from tuneforge.rundir import atomic_write_text

        if re.search(r"\s", str(run_dir)):
            raise LaunchError(f"run directory '{run_dir}' contains whitespace, which #SBATCH lines cannot "
                              "carry; choose another output_root")
        view = accelerate_view(run)
        if uses_deepspeed(view):
            validate_ds_config(build_ds_config(view), view)
        written = {}
        for name, content in self.artifacts(run, run_dir, backend).items():
            atomic_write_text(run_dir / name, content)
            written[name] = run_dir / name
        written[SCRIPT_NAME].chmod(0o755)
        (run_dir / "logs").mkdir(exist_ok=True)
        return written

    def launch(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, Any] | None:
        from tuneforge.job_index import record_job

        script = self.prepare(run, run_dir, backend)[SCRIPT_NAME]
        from tuneforge.secrets import split_env

        job_id = submit(script, split_env(run.launcher.env)[1])
        record_job(Path(run.output_root), job_id=job_id, run_dir=run_dir, name=run.name, kind="train",
                   tracker=self.name, nodes=run.launcher.nodes, gpus_per_node=run.launcher.gpus_per_node)
        c = run.launcher
        res = f"{c.nodes} node(s), " + (f"{c.gpus_per_node} GPU(s) each" if c.gpus_per_node else "CPU")
        print(f"submitted Slurm job {job_id} ({res}, time limit {c.time})\n"
              f"  run dir  {run_dir}\n  script   {script}\n  logs     {run_dir / 'logs'}/\n"
              f"  status   tuneforge jobs output_root={run.output_root}", flush=True)
        if not c.wait:
            return {"submitted": True, "slurm_job_id": job_id, "run_dir": str(run_dir)}
        # the job has finished its run directory (finish_run: summary.json, eval.after_training) on its side;
        # "submitted" tells train() not to finish it a second time here
        return {**wait_for_job(job_id, run_dir), "slurm_job_id": job_id, "submitted": True}
