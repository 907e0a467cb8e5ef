"""The typed contracts between the layers: what a strategy, a backend and a launcher are.

Every implementation is looked up by name in its registry (``tuneforge.strategies.registry``,
``tuneforge.backends.registry``, ``tuneforge.launch.registry``), which imports only the one a run names.
Callers use these Protocols instead of probing objects with ``hasattr``; the base classes give the optional
members their defaults, so an implementation states only what it does.

- **Strategy** (``method=full|lora|qlora``): what trains and how the base loads. The only code that knows
  the methods: ``uses_adapter`` (weights saved as an adapter), ``quantization_config`` (how the base loads),
  ``build`` (wrap the loaded model).
- **Backend** (``backend=native|axolotl|openai|sentence-transformers``): the run's files from the plan
  (``artifacts``/``prepare``), the per-process argv (``command``), and the result.
- **Launcher** (``launcher=local|accelerate|slurm|ray``): where the run goes and how its processes start;
  ``launch`` returns the result, or ``{"submitted": True, ...}`` for a batch job that ends its run directory
  itself through :func:`tuneforge.finish.finish_run`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from tuneforge.errors import ConfigError
from tuneforge.schema.run import RunConfig


class Strategy(Protocol):
    name: str
    uses_adapter: bool

    def check(self, run: RunConfig) -> Iterable[str]: ...

    def quantization_config(self, run: RunConfig) -> Any:
        """bitsandbytes config the base loads with, or None (unquantized)."""
        ...

    def build(self, run: RunConfig, model: Any) -> Any: ...


class Backend(Protocol):
    name: str
    hosted: bool  # trains on a provider's servers: no local weights, no model download, no memory estimate
    objectives: tuple[str, ...]  # the objectives it trains (tuneforge.schema.objective.OBJECTIVES)

    def check(self, run: RunConfig) -> Iterable[str]: ...

    def artifacts(self, run: RunConfig, run_dir: Path) -> dict[str, str]: ...

    def prepare(self, run: RunConfig, run_dir: Path) -> dict[str, Path]: ...

    def command(self, run: RunConfig, run_dir: Path) -> list[str]: ...

    def run_in_process(self, run: RunConfig, run_dir: Path) -> dict[str, Any] | None:
        """Train in the calling process when the backend can (saves a second interpreter); else None."""
        ...


class HostedBackend(Backend, Protocol):
    def preflight(self, run: RunConfig, *, yes: bool = False) -> Any:
        """Checks, counts and the cost question, before a run directory exists; raises TuneforgeError."""
        ...


class Launcher(Protocol):
    name: str
    runs_here: bool  # False: the run executes elsewhere (a cluster), so this host does not check its model

    def check(self, run: RunConfig) -> Iterable[str]: ...

    def artifacts(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, str]: ...

    def prepare(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, Path]: ...

    def commands(self, run: RunConfig, run_dir: Path, backend: Backend) -> list[list[str]]: ...

    def launch(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, Any] | None: ...


class LauncherBase:
    """Defaults for a launcher's optional members: runs here, writes no files of its own."""

    name: str = ""
    runs_here: bool = True

    def check(self, run: RunConfig) -> Iterable[str]:
        return ()

    def artifacts(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, str]:
        return {}

    def prepare(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, Path]:
        return {}


def load_component(registry: dict[str, str], key: str, name: str) -> Any:
    """A new instance of the class a registry names as ``module:Class`` (imported now, not before);
    an unknown ``name`` is refused naming ``key`` and the valid names."""
    try:
        module, attr = registry[name].split(":")
    except KeyError:
        raise ConfigError(f"{key}={name!r} is not valid; choose one of: {', '.join(registry)}") from None
    return getattr(importlib.import_module(module), attr)()
