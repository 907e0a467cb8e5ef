"""The backend protocol: how a RunConfig becomes a concrete training job.

``check`` refuses unsupported combinations at compose time; ``artifacts`` renders the backend's native
files (what ``plan`` shows) and ``prepare`` writes them into the run directory; ``command`` is the
per-process entry a launcher starts (argv after the Python interpreter); ``run_in_process`` trains in the
calling process when the backend can (the local launcher uses it and saves a second interpreter start-up).

``hosted`` backends train on a provider's servers (OpenAI): no local weights, no model download and no
memory estimate; they are :class:`HostedBackend`, whose ``preflight`` runs before the run directory exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from tuneforge.config.schema import RunConfig


class Backend(Protocol):
    name: str
    hosted: bool

    def check(self, run: RunConfig) -> Iterable[str]: ...

    def artifacts(self, run: RunConfig, run_dir: Path) -> dict[str, str]: ...

    def prepare(self, run: RunConfig, run_dir: Path) -> dict[str, Path]: ...

    def command(self, run: RunConfig, run_dir: Path) -> list[str]: ...

    def run_in_process(self, run: RunConfig, run_dir: Path) -> dict[str, Any] | None: ...


class HostedBackend(Backend, Protocol):
    def preflight(self, run: RunConfig, *, yes: bool = False) -> Any:
        """Checks, counts and the cost question, before a run directory exists; raises TuneforgeError."""
        ...
