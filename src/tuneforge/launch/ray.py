"""The Ray launcher: one Ray job per run; inside it Ray Train's ``TorchTrainer`` runs the data-parallel workers.

Submission side (``tuneforge train launcher=ray``): write ``ray_submission.json`` (the entrypoint, the
runtime environment, the scaling: exactly what is submitted, and what ``plan`` shows), submit it with Ray's
``JobSubmissionClient`` to ``launcher.address`` (the cluster's dashboard, ``http://<head>:8265``), record
the job in the jobs index (``tuneforge jobs``) and return; with ``launcher.wait=true`` block until it ends.

Job side (``python -m tuneforge.launch.ray job <run_dir>``, the job's entrypoint, on the cluster): prepare
the dataset once, start ``launcher.num_workers`` Ray Train workers (``ScalingConfig``), which join Ray's
torch process group (``TorchConfig``: gloo on CPU, nccl on GPUs; Ray sets RANK/LOCAL_RANK/WORLD_SIZE/
MASTER_ADDR/MASTER_PORT and ``ACCELERATE_TORCH_DEVICE`` in each worker before it initialises the group, and
accelerate's ``PartialState`` reuses an initialised group). Each worker trains exactly as a worker under
``accelerate launch`` does (:func:`tuneforge.worker.main`: rank 0 writes ``worker_result.json``). The job then
finishes its own run directory through :func:`tuneforge.finish.finish_run` (summary.json last,
``eval.after_training``, trackers), or leaves FAILED, because the submitting process may be long gone.

The run directory must be on a filesystem the cluster's nodes share with the submitting host, and tuneforge
must be importable there (as for Slurm). Ray's own files (its Train run state) go to ``<run_dir>/ray/``.
``ray`` is imported only inside functions: ``plan`` and config validation never import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneforge.errors import LaunchError
from tuneforge.rundir import FAILED, SUMMARY
from tuneforge.schema.components import LauncherBase
from tuneforge.schema.run import RunConfig

SUBMISSION_NAME = "ray_submission.json"  # what is submitted (plan shows it; prepare writes it)
JOB_INFO_NAME = "ray_job.json"  # the submitted job: id, address; the job side adds where it ran
STORAGE_DIR = "ray"  # Ray Train's storage_path, inside the run directory (never ~/ray_results)
WORKER_ENTRY = ["-m", "tuneforge.worker"]  # the per-process entry a backend must have to run on Ray workers
# Ray's JobStatus -> the state words `tuneforge jobs` uses for Slurm jobs
STATES = {"PENDING": "PENDING", "RUNNING": "RUNNING", "STOPPED": "CANCELLED", "SUCCEEDED": "COMPLETED",
          "FAILED": "FAILED"}
TERMINAL = {"STOPPED", "SUCCEEDED", "FAILED"}
_ADDRESS_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")  # Ray lets these override an explicit address


def worker_env(run: RunConfig) -> dict[str, str]:
    """The job's environment (Ray's runtime_env ``env_vars``; every worker of the job inherits it): what an
    ``accelerate launch`` process gets (ACCELERATE_USE_CPU=true on CPU, so the Trainer runs MULTI_CPU over
    the gloo group Ray made), plus ``launcher.env``. ``check`` refuses secret-named variables: runtime_env
    values are stored by Ray and shown by its dashboard and job API."""
    from tuneforge.launch.accelerate import accelerate_view, process_env
    from tuneforge.secrets import is_safe_env

    return {k: v for k, v in process_env(accelerate_view(run)).items() if k not in run.launcher.env or is_safe_env(k)}


def entrypoint(run: RunConfig, run_dir: Path) -> list[str]:
    return [run.launcher.python or sys.executable, "-m", "tuneforge.launch.ray", "job", str(run_dir)]


def submission(run: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The keyword arguments of ``JobSubmissionClient.submit_job`` (minus the id, made at submission)."""
    c = run.launcher
    return {
        "entrypoint": shlex.join(entrypoint(run, run_dir)),
        # Ray Train's print patch routes print() around sys.stdout, so dill's stdout capture (datasets hashing)
        # would print bytecode listings into the job log
        "runtime_env": {"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **worker_env(run)}},
        "metadata": {"tuneforge_name": run.name, "tuneforge_run_dir": str(run_dir)},
        # the entrypoint only coordinates: the workers hold the CPUs/GPUs (ScalingConfig below)
        "entrypoint_num_cpus": 0,
        "scaling": {"num_workers": c.num_workers, "use_gpu": c.use_gpu, "resources_per_worker":
                    resources_per_worker(run), "torch_backend": "nccl" if c.use_gpu else "gloo"},
    }


def resources_per_worker(run: RunConfig) -> dict[str, float]:
    c = run.launcher
    return {"CPU": float(c.cpus_per_worker), **({"GPU": 1.0} if c.use_gpu else {})}


@contextlib.contextmanager
def _explicit_address(address: str | None) -> Iterator[None]:
    """Ray's SDK prefers RAY_ADDRESS / RAY_API_SERVER_ADDRESS over the address it is given: an explicit
    ``launcher.address`` is honoured, not silently replaced by the environment."""
    saved = {k: os.environ.pop(k) for k in _ADDRESS_VARS if address and k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def client(address: str | None) -> Any:
    """A ``JobSubmissionClient`` for the cluster's dashboard; a LaunchError that says how to reach it."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise LaunchError("launcher=ray needs Ray: pip install 'ray[default,train]==2.60.0' "
                          "(or make setup, which installs requirements/lock.txt)") from None
    try:
        with _explicit_address(address):
            return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError ("could not find any running Ray instance")
        where = address or os.environ.get("RAY_ADDRESS") or "a Ray cluster on this machine"
        raise LaunchError(f"cannot reach the Ray cluster at {where}: {exc}\n  start one with `ray start --head` "
                          "or point launcher.address at its dashboard, e.g. launcher.address=http://<head>:8265"
                          ) from None


def job_status(address: str | None, job_id: str) -> str | None:
    """Ray's status word for a job (PENDING/RUNNING/STOPPED/SUCCEEDED/FAILED); None if the cluster has no such
    job; "UNREACHABLE" when the cluster cannot be asked."""
    try:
        status = client(address).get_job_status(job_id)
    except LaunchError:
        return "UNREACHABLE"
    except Exception as exc:
        return None if "does not exist" in str(exc) else "UNREACHABLE"
    return str(getattr(status, "value", status))


def job_states(entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """job id -> {state, time, nodes, source} for the Ray entries of the jobs index (one client per address).
    Jobs the cluster no longer knows (or an unreachable cluster) are left out: the run directory tells."""
    by_address: dict[str | None, list[str]] = {}
    for e in entries:
        by_address.setdefault(e.get("address"), []).append(e["job_id"])
    states: dict[str, dict[str, str]] = {}
    for address, ids in by_address.items():
        try:
            jobs = {j.submission_id: j for j in client(address).list_jobs() if j.submission_id in ids}
        except Exception:
            continue
        for jid, j in jobs.items():
            start, end = j.start_time, j.end_time or (time.time() * 1000 if j.start_time else None)
            secs = int((end - start) / 1000) if start and end else None
            states[jid] = {"state": STATES.get(str(j.status.value), str(j.status.value)),
                           "time": f"{secs // 60}:{secs % 60:02d}" if secs is not None else "",
                           "nodes": "", "source": "ray"}
    return states


def wait_for_job(address: str | None, job_id: str, run_dir: Path, poll_s: float = 2.0,
                 max_unreachable: int = 60) -> dict[str, Any]:
    """Block until the job has ended; the job's own summary.json is the result. Ray's job log is copied to
    ``<run_dir>/logs/ray-<job id>.out``."""
    status: str | None = "PENDING"
    unreachable = 0
    while status not in TERMINAL:
        time.sleep(poll_s)
        status = job_status(address, job_id)
        if status is None:
            break
        unreachable = unreachable + 1 if status == "UNREACHABLE" else 0
        if unreachable >= max_unreachable:
            raise LaunchError(f"lost contact with the Ray cluster while waiting for job {job_id}; the job may "
                              f"still run: tuneforge jobs, or ray job logs {job_id}")
    with contextlib.suppress(Exception):
        from tuneforge.rundir import atomic_write_text
        from tuneforge.secrets import secret_values

        text = client(address).get_job_logs(job_id)
        for secret in secret_values():
            text = text.replace(secret, "***REDACTED***")
        (run_dir / "logs").mkdir(exist_ok=True)
        atomic_write_text(run_dir / "logs" / f"ray-{job_id}.out", text)
    summary_path = run_dir / SUMMARY
    if summary_path.is_file():
        print(f"Ray job {job_id} {STATES.get(status or '', status)}: {summary_path}", flush=True)
        return json.loads(summary_path.read_text())
    failed = run_dir / FAILED
    why = failed.read_text().strip() if failed.is_file() else f"job ended in state {status or 'unknown'}"
    raise LaunchError(f"Ray job {job_id} failed: {why}\n  logs: ray job logs {job_id} "
                      f"(copied to {run_dir / 'logs'}/)")


def stop_job(run_dir: Path) -> str:
    """Stop the run's Ray job (``tuneforge cancel run=<dir>``); returns the state Ray reports afterwards."""
    info = read_job_info(run_dir)
    if not info.get("job_id"):
        raise LaunchError(f"{run_dir} records no Ray job ({JOB_INFO_NAME})")
    client(info.get("address")).stop_job(info["job_id"])
    status = None
    for _ in range(30):  # Ray stops the entrypoint (SIGTERM, then SIGKILL) within a few seconds
        status = job_status(info.get("address"), info["job_id"])
        if status in TERMINAL or status is None:
            break
        time.sleep(0.5)
    return STATES.get(status or "", status or "UNKNOWN")


def _dashboard(jobs: Any, address: str | None) -> str | None:
    with contextlib.suppress(Exception):
        return jobs.get_address()
    return address


def read_job_info(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / JOB_INFO_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


class RayLauncher(LauncherBase):
    name = "ray"
    runs_here = False  # the job runs on the cluster: the base model and dataset are checked there

    def job_states(self, entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        return job_states(entries)

    def cancel(self, run_dir: Path) -> str | None:
        job_id = read_job_info(run_dir).get("job_id")
        return f"Ray job {job_id}: {stop_job(run_dir)}" if job_id else None

    def check(self, run: RunConfig) -> Iterable[str]:
        from tuneforge.backends.registry import BACKENDS, get_backend
        from tuneforge.secrets import is_safe_env

        c = run.launcher
        if c.num_workers < 1:
            yield f"launcher.num_workers={c.num_workers} must be >= 1 (Ray Train workers, one process each)"
        if not c.cpus_per_worker > 0:
            yield f"launcher.cpus_per_worker={c.cpus_per_worker} must be > 0"
        if c.address and "://" in c.address and c.address.split("://", 1)[0] not in ("http", "https", "ray"):
            yield (f"launcher.address={c.address!r} is not a Ray address; use the dashboard's "
                   "http://<head>:8265, ray://<head>:10001, or null (RAY_ADDRESS, else a cluster on this machine)")
        backend = get_backend(run.backend.name) if run.backend.name in BACKENDS else None
        if backend is not None and backend.hosted:
            yield (f"backend={run.backend.name} trains on the provider's servers: launcher=ray has nothing to run; "
                   "use launcher=local")
        elif backend is not None and (entry := backend.command(run, Path("<run_dir>"))[:2]) != WORKER_ENTRY:
            yield (f"backend={run.backend.name} starts its own processes ({' '.join(entry)}), "
                   "which Ray Train workers cannot run; use backend=native with launcher=ray, or "
                   f"launcher=accelerate / launcher=slurm for backend={run.backend.name}")
        if run.distributed.name != "none":
            yield (f"distributed={run.distributed.name}: launcher=ray runs plain data parallel (DDP over Ray's "
                   "process group), not DeepSpeed ZeRO; use distributed=none, or launcher=accelerate / "
                   "launcher=slurm for ZeRO")
        if c.use_gpu and run.model.tiny is not None:
            yield (f"launcher.use_gpu=true requested for a CPU-only recipe (model '{run.model.name_or_path}' is a "
                   "tiny local smoke-test model): set launcher.use_gpu=false, or pick a GPU recipe such as "
                   "recipe=lora-llama")
        problem = c.resources().precision_problem(run.hparams.mixed_precision, "launcher.use_gpu=false")
        if problem:
            yield problem
        secret = sorted(k for k in c.env if not is_safe_env(k))
        if secret:
            yield (f"launcher.env.{secret[0]}: launcher=ray passes launcher.env to the job as Ray's runtime_env, "
                   "which Ray stores and shows in its dashboard, so secret variables are refused; set "
                   f"{', '.join(secret)} in the environment of the Ray cluster's nodes (where `ray start` runs)")

    def commands(self, run: RunConfig, run_dir: Path, backend: Any) -> list[list[str]]:
        """The equivalent ``ray job submit`` command line (what `plan` prints); `train` uses Ray's SDK."""
        c = run.launcher
        sub = submission(run, run_dir)
        cmd = ["ray", "job", "submit"]
        if c.address:
            cmd += ["--address", c.address]
        cmd += ["--runtime-env-json", json.dumps(sub["runtime_env"], sort_keys=True),
                "--entrypoint-num-cpus", "0", "--", *entrypoint(run, run_dir)]
        return [cmd]

    def artifacts(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, str]:
        """File name -> content, exactly as ``prepare`` writes them (what `plan` shows)."""
        return {SUBMISSION_NAME: json.dumps(submission(run, run_dir), indent=2, sort_keys=True) + "\n"}

    def prepare(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, Path]:
        from tuneforge.rundir import atomic_write_text

        written = {}
        for name, content in self.artifacts(run, run_dir, backend).items():
            atomic_write_text(run_dir / name, content)
            written[name] = run_dir / name
        (run_dir / "logs").mkdir(exist_ok=True)
        return written

    def launch(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, Any] | None:
        from tuneforge.job_index import record_job
        from tuneforge.rundir import atomic_write_json

        self.prepare(run, run_dir, backend)
        c = run.launcher
        sub = submission(run, run_dir)
        jobs = client(c.address)
        job_id = f"tuneforge-{run.name}-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        atomic_write_json(run_dir / JOB_INFO_NAME, {"job_id": job_id, "address": c.address,
                                                    "dashboard": _dashboard(jobs, c.address),
                                                    "submitted_unix": time.time()})
        try:
            jobs.submit_job(submission_id=job_id, entrypoint=sub["entrypoint"], runtime_env=sub["runtime_env"],
                            metadata=sub["metadata"], entrypoint_num_cpus=sub["entrypoint_num_cpus"])
        except Exception as exc:
            raise LaunchError(f"Ray refused the job: {exc}\n  submission: {run_dir / SUBMISSION_NAME}") from None
        record_job(Path(run.output_root), job_id=job_id, run_dir=run_dir, name=run.name, kind="ray", tracker=self.name,
                   address=c.address, nodes="", workers=c.num_workers)
        res = f"{c.num_workers} worker(s), " + ("1 GPU each" if c.use_gpu else f"{c.cpus_per_worker:g} CPU each")
        print(f"submitted Ray job {job_id} ({res}) to {_dashboard(jobs, c.address)}\n"
              f"  run dir  {run_dir}\n  logs     ray job logs {job_id}\n"
              f"  status   tuneforge jobs output_root={run.output_root}", flush=True)
        if not c.wait:
            return {"submitted": True, "ray_job_id": job_id, "run_dir": str(run_dir)}
        # the job has finished its run directory (summary.json, eval.after_training): "submitted" tells train()
        # not to finish it a second time here
        return {**wait_for_job(c.address, job_id, run_dir), "submitted": True}


# --- job side: the Ray job's entrypoint -------------------------------------------------------------------


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the same per-process entry as under ``accelerate launch``."""
    import tuneforge
    from tuneforge.worker import main

    rank = os.environ.get("RANK", "?")
    print(f"tuneforge: ray worker rank {rank}/{os.environ.get('WORLD_SIZE', '?')} "
          f"(tuneforge from {Path(tuneforge.__file__).parent})", flush=True)
    rc = main([config["run_dir"]])
    if rc != 0:
        raise RuntimeError(f"tuneforge.worker exited with status {rc} on rank {rank}")


def run_trainer(run: RunConfig, run_dir: Path) -> Any:
    """Ray Train's TorchTrainer over ``launcher.num_workers`` workers; Ray's storage in ``<run_dir>/ray``."""
    import ray
    from ray.train import FailureConfig, ScalingConfig
    from ray.train import RunConfig as RayRunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    c = run.launcher
    if not ray.is_initialized():
        ray.init(log_to_driver=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"run_dir": str(run_dir)},
        scaling_config=ScalingConfig(num_workers=c.num_workers, use_gpu=c.use_gpu,
                                     resources_per_worker=resources_per_worker(run)),
        torch_config=TorchConfig(backend="nccl" if c.use_gpu else "gloo"),
        run_config=RayRunConfig(name=run_dir.name, storage_path=str(run_dir / STORAGE_DIR),
                                failure_config=FailureConfig(max_failures=0)),
    )
    return trainer.fit()


def job_main(run_dir: Path) -> int:
    """Prepare the data once, train on the workers, then finish the run directory (summary.json or FAILED)."""
    import tuneforge
    from tuneforge.launch.job_side import finish_from_workers, mark_failed, mark_started
    from tuneforge.rundir import atomic_write_json, read_config

    t0 = time.time()
    info = read_job_info(run_dir)
    job_id = info.get("job_id", "?")
    info.update(job_start_unix=t0, job_host=os.uname().nodename, job_python=sys.executable,
                tuneforge_path=str(Path(tuneforge.__file__).parent))
    atomic_write_json(run_dir / JOB_INFO_NAME, info)
    mark_started(run_dir, f"ray job {job_id} on {info['job_host']}")
    run = read_config(run_dir)
    try:
        from tuneforge.data.prepare import prepare_splits
        from tuneforge.models import check_model_reachable, local_model_dir

        check_model_reachable(run)
        prepare_splits(run.dataset)  # once, here, before the workers read the cached splits
        # the model cache (tiny / converted GGUF) too: inside Ray's process group only rank 0's save_pretrained
        # writes weights, so a worker of another rank must never be the one that builds it
        local_model_dir(run.model)
        run_trainer(run, run_dir)
    except Exception as exc:
        return mark_failed(run_dir, f"ray job {job_id}", f"{type(exc).__name__}: {exc}".strip())
    return finish_from_workers(run, run_dir, f"ray job {job_id}", time.time() - info.get("submitted_unix", t0),
                               ray_job_id=job_id)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "job":
        print("usage: python -m tuneforge.launch.ray job <run_dir>", file=sys.stderr)
        return 2
    return job_main(Path(argv[1]).resolve())


if __name__ == "__main__":
    # run through the importable module, so Ray pickles train_loop_per_worker by reference, not as __main__'s
    from tuneforge.launch import ray as _module

    sys.exit(_module.main())
