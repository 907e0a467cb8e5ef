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
from typing import Any, Literal, Protocol

from tuneforge.errors import ConfigError
from tuneforge.schema.dataset import EMBEDDING_FORMATS, FORMAT_NAMES, PREFERENCE_FORMATS
from tuneforge.schema.run import RunConfig

# what a backend trains: a next-token model on conversations, an embedding model on texts, or a next-token
# model on preference pairs. Callers branch on this, never on a backend's name.
TaskKind = Literal["causal-lm", "embedding", "preference"]
# where the loss falls: the assistant turns only, every token, or the provider decides (hosted)
LossMask = Literal["assistant-only", "all-tokens", "provider"]
# the dataset formats holding conversations (every generating backend reads these)
CONVERSATION_FORMATS: tuple[str, ...] = tuple(f for f in FORMAT_NAMES
                                              if f not in EMBEDDING_FORMATS + PREFERENCE_FORMATS) + ("pairs",)


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
    task: TaskKind
    data_formats: tuple[str, ...]  # the dataset formats it trains on; any other is refused at compose time
    objectives: tuple[str, ...]  # the objectives it trains (tuneforge.schema.objective.OBJECTIVES)

    def coverage(self) -> dict[str, str]:
        """Every training setting (``tuneforge.backends.coverage.settings_fields``): ``mapped``, ``n/a: why``
        or ``unsupported: why`` (refused at compose time when it differs from its default)."""
        ...

    def loss_mask(self, run: RunConfig) -> LossMask: ...

    def plan_notes(self, run: RunConfig) -> list[str]:
        """Lines `plan` prints about this backend's translation (what its own validator checks, CPU settings)."""
        ...

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


class BackendBase:
    """Defaults for a backend's declarations: a local causal LM on conversations, loss on the assistant turns."""

    name: str = ""
    hosted: bool = False
    task: TaskKind = "causal-lm"
    data_formats: tuple[str, ...] = CONVERSATION_FORMATS
    objectives: tuple[str, ...] = ("sft",)

    def coverage(self) -> dict[str, str]:
        raise NotImplementedError(f"backend {self.name!r} does not say what it does with each setting")

    def loss_mask(self, run: RunConfig) -> LossMask:
        return "assistant-only"

    def plan_notes(self, run: RunConfig) -> list[str]:
        return []

    def check(self, run: RunConfig) -> Iterable[str]:
        return ()

    def artifacts(self, run: RunConfig, run_dir: Path) -> dict[str, str]:
        return {}  # config.yaml is all the run needs (the launcher adds its own files)

    def prepare(self, run: RunConfig, run_dir: Path) -> dict[str, Path]:
        return {"config": run_dir / "config.yaml"}

    def command(self, run: RunConfig, run_dir: Path) -> list[str]:
        return ["-m", "tuneforge.worker", str(run_dir)]

    def run_in_process(self, run: RunConfig, run_dir: Path) -> dict[str, Any] | None:
        return None

    def job_states(self, entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        return {}  # a hosted backend answers for its provider's jobs; a local one submits none

    def cancel(self, run_dir: Path) -> str | None:
        return None


class Launcher(Protocol):
    name: str
    runs_here: bool  # False: the run executes elsewhere (a cluster), so this host does not check its model

    def check(self, run: RunConfig) -> Iterable[str]: ...

    def artifacts(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, str]: ...

    def prepare(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, Path]: ...

    def commands(self, run: RunConfig, run_dir: Path, backend: Backend) -> list[list[str]]: ...

    def launch(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, Any] | None: ...


class JobTracker(Protocol):
    """Who answers for a submitted job (a launcher that submits batch jobs, or a hosted backend): ``tuneforge
    jobs`` and ``tuneforge cancel`` ask it, never a job's kind string."""

    name: str

    def job_states(self, entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        """job id -> {state, source, time, nodes, ...} for the jobs-index entries it submitted."""
        ...

    def cancel(self, run_dir: Path) -> str | None:
        """Cancel the job the run directory records; what happened in one line, or None: no job of its own."""
        ...


class LauncherBase:
    """Defaults for a launcher's optional members: runs here, writes no files of its own, submits no jobs."""

    name: str = ""
    runs_here: bool = True

    def check(self, run: RunConfig) -> Iterable[str]:
        return ()

    def artifacts(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, str]:
        return {}

    def prepare(self, run: RunConfig, run_dir: Path, backend: Backend) -> dict[str, Path]:
        return {}

    def job_states(self, entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        return {}

    def cancel(self, run_dir: Path) -> str | None:
        return None


def load_component(registry: dict[str, str], key: str, name: str) -> Any:
    """A new instance of the class a registry names as ``module:Class`` (imported now, not before);
    an unknown ``name`` is refused naming ``key`` and the valid names."""
    try:
        module, attr = registry[name].split(":")
    except KeyError:
        raise ConfigError(f"{key}={name!r} is not valid; choose one of: {', '.join(registry)}") from None
    return getattr(importlib.import_module(module), attr)()
