"""Launcher registry: where and how a run's processes start. Adding one = one module + one line here.

Entries are import paths, imported on first use, so a run loads only the launcher it names.
"""

from __future__ import annotations

from functools import cache

from tuneforge.schema.components import Launcher, load_component

LAUNCHERS: dict[str, str] = {
    "local": "tuneforge.launch.local:LocalLauncher",
    "accelerate": "tuneforge.launch.accelerate:AccelerateLauncher",
    "slurm": "tuneforge.launch.slurm:SlurmLauncher",
    "ray": "tuneforge.launch.ray:RayLauncher",
}


@cache
def get_launcher(name: str) -> Launcher:
    return load_component(LAUNCHERS, "launcher.name", name)
