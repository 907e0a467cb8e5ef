"""Launcher registry: where and how a run's processes start."""

from __future__ import annotations

from typing import Any

from tuneforge.launch.accelerate import AccelerateLauncher
from tuneforge.launch.local import LocalLauncher
from tuneforge.launch.ray import RayLauncher
from tuneforge.launch.slurm import SlurmLauncher

LAUNCHERS: dict[str, Any] = {
    "local": LocalLauncher(),
    "accelerate": AccelerateLauncher(),
    "slurm": SlurmLauncher(),
    "ray": RayLauncher(),
}


def get_launcher(name: str) -> Any:
    return LAUNCHERS[name]
