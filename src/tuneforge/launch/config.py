"""Where a run executes (launcher) and how its processes share the model (distributed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class LauncherConfig:
    name: str = MISSING  # a key of tuneforge.launch.registry.LAUNCHERS
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the launched processes
    additional_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalLauncherConfig(LauncherConfig):
    """One process on this machine."""

    name: str = "local"


@dataclass
class DistributedConfig:
    """How the model is sharded across processes; ``none`` = plain data parallel or a single process."""

    name: str = MISSING  # none | zero1 | zero2 | zero3 | zero3-offload
    zero_stage: Optional[int] = None
    offload_optimizer: bool = False
    offload_params: bool = False
