"""Launcher registry: where and how a run's processes start. Adding one = one module + one line here.

Entries are import paths, imported on first use, so a run loads only the launcher it names.
"""

from __future__ import annotations

import importlib
from functools import cache

from tuneforge.errors import ConfigError
from tuneforge.schema.components import Launcher

LAUNCHERS: dict[str, str] = {
    "local": "tuneforge.launch.local:LocalLauncher",
    "accelerate": "tuneforge.launch.accelerate:AccelerateLauncher",
    "slurm": "tuneforge.launch.slurm:SlurmLauncher",
    "ray": "tuneforge.launch.ray:RayLauncher",
}


@cache
def get_launcher(name: str) -> Launcher:
    try:
        module, attr = LAUNCHERS[name].split(":")
    except KeyError:
        raise ConfigError(f"launcher.name={name!r} is not valid; choose one of: {', '.join(LAUNCHERS)}") from None
    return getattr(importlib.import_module(module), attr)()
