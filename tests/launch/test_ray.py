"""launcher=ray: a real local Ray head (ray start --head on 127.0.0.1), a 2-worker CPU data-parallel tiny training
submitted as a Ray job (Ray Train's TorchTrainer inside), eval.after_training on the job's side, `tuneforge
jobs` and `tuneforge cancel` for Ray jobs; and, without a head, what compose/check refuse and that `plan`
imports neither ray nor torch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, read_metrics
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError

pytestmark = pytest.mark.integration  # every test here talks to a real Ray head (or its absence)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster on 127.0.0.1 for this module; yields its dashboard (job API) address."""
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed: pip install 'ray[default,train]==2.60.0' (make setup installs it)")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        pytest.skip(f"no `ray` command next to {sys.executable}")
    gcs_port, dash_port = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="tf-ray-")  # short: Ray's unix socket paths live under it
    env = {**os.environ,
           # this checkout's tuneforge for the job's entrypoint and the workers (they inherit the head's env)
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]),
           # loopback only: Ray swaps 127.0.0.1 for the host's routable address unless told it is no cluster
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "GLOO_SOCKET_IFNAME": "lo",
           "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(var, None)
    address = f"http://127.0.0.1:{dash_port}"
    cmd = [str(ray_cli), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", "--num-cpus=4",
           "--object-store-memory=200000000", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
        assert proc.returncode == 0, f"ray start failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, f"the Ray dashboard at {address} did not answer within 120 s"
            time.sleep(1)
        yield address
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _loss_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if "loss" in r and "eval_loss" not in r]


@pytest.mark.ray
def test_two_worker_cpu_training_through_a_ray_job(ray_head: str, out_root: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    from tuneforge.jobs import cmd_jobs, read_index
    from tuneforge.launch.ray import client
    from tuneforge.train import train

    run = load_run_config(["recipe=lora-tiny", "launcher=ray", f"launcher.address={ray_head}", "launcher.wait=true",
                           "hparams.max_steps=6", "eval.after_training=true", "eval.max_samples=2",
                           "eval.max_new_tokens=4", f"output_root={out_root}"])
    summary = train(run, quiet=True)
    run_dir = Path(summary["run_dir"])
    job_id = summary["ray_job_id"]
    # the job finished its own run directory: summary.json (written by the job, once), weights, metrics
    assert summary["launcher"] == "ray" and summary["steps"] == 6
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["ray_job_id"] == job_id and on_disk["wall_time_s"] == summary["wall_time_s"]
    assert not (run_dir / "RUNNING").exists() and not (run_dir / "FAILED").exists()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert _loss_steps(run_dir) == list(range(1, 7))
    losses = [r["loss"] for r in read_metrics(run_dir) if "loss" in r and "eval_loss" not in r]
    assert losses[-1] < losses[0], losses
    # real 2-process data parallel: the Trainer saw world size 2, each rank trained its own shard over gloo
    assert summary["world_size"] == 2
    ranks = [json.loads((run_dir / "ranks" / f"rank-{k}.json").read_text()) for k in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [6, 6]
    assert {r["backend"] for r in ranks} == {"gloo"} and "MULTI_CPU" in ranks[0]["distributed_type"]
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert not set(ranks[0]["sample_ids"]) & set(ranks[1]["sample_ids"])
    assert ranks[0]["trainable_weights_sha256"] == ranks[1]["trainable_weights_sha256"]
    # eval.after_training ran on the job's side (finish_run), not a second time here
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["n_examples"] == 2 and (run_dir / "report.md").is_file()
    log = (run_dir / "logs" / f"ray-{job_id}.out").read_text()
    assert log.count("tuneforge eval: lora-tiny") == 1 and "tuneforge run complete" in log
    assert "Disassembly of" not in log  # Ray Train's print patch is off (see ray.submission)
    # the job and its workers ran this checkout's tuneforge; Ray's storage stayed in the run directory
    info = json.loads((run_dir / "ray_job.json").read_text())
    assert info["tuneforge_path"] == str(REPO / "src" / "tuneforge")
    assert f"ray worker rank 1/2 (tuneforge from {REPO / 'src' / 'tuneforge'})" in log
    assert (run_dir / "ray").is_dir()
    assert client(ray_head).get_job_status(job_id).value == "SUCCEEDED"
    # the jobs index and `tuneforge jobs`
    assert [(e["job_id"], e["kind"]) for e in read_index(out_root)] == [(job_id, "ray")]
    capsys.readouterr()
    assert cmd_jobs([f"output_root={out_root}"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(job_id + " "))
    assert "COMPLETED" in line and " ray " in line and str(run_dir) in line


@pytest.mark.ray
def test_cancel_stops_a_ray_job(ray_head: str, out_root: Path, capsys: pytest.CaptureFixture) -> None:
    from tuneforge.jobs import cmd_cancel, cmd_jobs
    from tuneforge.train import train

    run = load_run_config(["recipe=lora-tiny", "launcher=ray", f"launcher.address={ray_head}",
                           "hparams.max_steps=100000", f"output_root={out_root}"])
    submitted = train(run, quiet=True)
    assert submitted["submitted"] is True
    run_dir = Path(submitted["run_dir"])
    assert cmd_cancel([f"run={run_dir}"]) == 0
    assert f"Ray job {submitted['ray_job_id']}: CANCELLED" in capsys.readouterr().out
    assert cmd_jobs([f"output_root={out_root}"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(submitted["ray_job_id"]))
    assert "CANCELLED" in line
    assert not (run_dir / "summary.json").exists()


# --- no head needed -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "key"), [
    (["distributed=zero2"], "distributed=zero2"),
    (["backend=axolotl"], "backend=axolotl"),
    (["launcher.num_workers=0"], "launcher.num_workers=0"),
    (["hparams.mixed_precision=bf16"], "hparams.mixed_precision=bf16"),
    (["launcher.use_gpu=true"], "launcher.use_gpu=true"),
    (["+launcher.env.HF_TOKEN=hf_not_a_real_token_123"], "launcher.env.HF_TOKEN"),
    (["launcher.address=tcp://head:8265"], "launcher.address="),
])
def test_ray_refuses_what_it_cannot_honour(override: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(["recipe=lora-tiny", "launcher=ray", *override])
    assert key in str(err.value), str(err.value)
    assert "hf_not_a_real_token_123" not in str(err.value)


def test_hosted_backend_refused_on_ray() -> None:
    with pytest.raises(ConfigError, match="launcher=ray"):
        load_run_config(["recipe=openai-gpt4o-mini", "launcher=ray"])


def test_plan_for_ray_imports_neither_ray_nor_torch(tmp_path: Path) -> None:
    code = ("import sys; from tuneforge.cli import main; "
            f"rc = main(['plan', 'recipe=lora-tiny', 'launcher=ray', 'launcher.address=http://10.0.0.1:8265', "
            f"'run_dir=/shared/runs/r', '--out', {str(tmp_path)!r}]); "
            "print([m for m in ('ray', 'torch') if m in sys.modules]); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "[]" in proc.stdout.splitlines()[-1]
    assert "ray job submit --address http://10.0.0.1:8265" in proc.stdout
    assert "-m tuneforge.launch.ray job /shared/runs/r" in proc.stdout
    sub = json.loads((tmp_path / "ray_submission.json").read_text())
    assert sub["scaling"] == {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1.0},
                              "torch_backend": "gloo"}
    assert sub["runtime_env"]["env_vars"]["ACCELERATE_USE_CPU"] == "true"
    memory = json.loads((tmp_path / "memory_estimate.json").read_text())
    assert memory["processes"] == 2


def test_jobs_falls_back_to_the_run_dir_when_the_cluster_is_gone(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    from tuneforge.job_index import record_job
    from tuneforge.jobs import cmd_jobs

    run_dir = tmp_path / "outputs" / "lora-tiny" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text("{}")
    record_job(tmp_path / "outputs", job_id="tuneforge-lora-tiny-x", run_dir=run_dir, name="lora-tiny", kind="ray",
               address=f"http://127.0.0.1:{_free_port()}")
    assert cmd_jobs([f"output_root={tmp_path / 'outputs'}"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("tuneforge-lora-tiny-x"))
    assert "COMPLETED" in line and "run dir" in line
