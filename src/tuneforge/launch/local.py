"""The local launcher: one process on this machine.

A backend that can train in process (native) does so: no second interpreter start-up. Others (axolotl)
are started as one subprocess running the backend's command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuneforge.errors import LaunchError
from tuneforge.schema.components import LauncherBase
from tuneforge.schema.run import RunConfig


class LocalLauncher(LauncherBase):
    name = "local"

    def check(self, run: RunConfig) -> Iterable[str]:
        if run.distributed.name != "none":
            yield (f"distributed={run.distributed.name} needs several processes; use launcher=accelerate "
                   "(or distributed=none for one local process)")

    def commands(self, run: RunConfig, run_dir: Path, backend: Any) -> list[list[str]]:
        """The command line(s) this launch runs, one per node (what `plan` prints)."""
        return [[sys.executable, *backend.command(run, run_dir)]]

    def launch(self, run: RunConfig, run_dir: Path, backend: Any) -> dict[str, Any] | None:
        result = backend.run_in_process(run, run_dir)
        if result is not None:
            return result
        (cmd,) = self.commands(run, run_dir, backend)
        env = {**os.environ, **run.launcher.env}
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0:
            raise LaunchError(f"{' '.join(cmd)} exited with status {proc.returncode}")
        return None
