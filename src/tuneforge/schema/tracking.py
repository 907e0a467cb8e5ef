"""Experiment tracking schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING


@dataclass
class TrackingConfig:
    name: str = MISSING  # none | wandb | tensorboard
    project: str = "tuneforge"
    entity: Optional[str] = None
    mode: str = "offline"  # wandb: offline | online | disabled
    tags: list[str] = field(default_factory=list)
