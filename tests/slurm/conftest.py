"""Slurm fixtures: the slurm-marked tests need a running cluster (`launchers/slurm/local-cluster.sh start`,
which `make test` and CI start); without one they skip and say why."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCAL_CONF = Path(os.environ.get("TUNEFORGE_SLURM_DIR", "/tmp/tuneforge-slurm")) / "etc" / "slurm.conf"


def _local_controller_alive() -> bool:
    pid_file = LOCAL_CONF.parent.parent / "run" / "slurmctld.pid"
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def _slurm_reason() -> str | None:
    """None when a cluster answers, else why not."""
    if shutil.which("sinfo") is None:
        return "Slurm client commands are not installed (launchers/slurm/local-cluster.sh install, as root)"
    if "SLURM_CONF" not in os.environ and LOCAL_CONF.is_file():
        if not _local_controller_alive():  # sinfo would retry an absent controller for ~10 s
            return "no running Slurm cluster: start one with launchers/slurm/local-cluster.sh start"
        os.environ["SLURM_CONF"] = str(LOCAL_CONF)  # the local test cluster, started outside pytest
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], check=False, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo timed out"
    states = out.stdout.split()
    if out.returncode != 0 or not states:
        return f"no running Slurm cluster (sinfo: {(out.stderr or out.stdout).strip()[:120]}); start one with " \
               "launchers/slurm/local-cluster.sh start"
    if not any(s.startswith(("idle", "mixed", "alloc", "complet")) for s in states):
        return f"the Slurm node is not usable (state {states[0]})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    reason = _slurm_reason()
    if reason:
        pytest.skip(reason)
    return os.environ["SLURM_CONF"]
