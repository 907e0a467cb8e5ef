"""Dataset schema: one YAML in conf/dataset/ per dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING


@dataclass
class SplitConfig:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 1234


@dataclass
class DatasetConfig:
    name: str = MISSING
    path: str = MISSING  # source file, relative to the project root or absolute
    format: str = "chat"  # chat | alpaca | completion | sharegpt | csv_qa
    system_prompt: Optional[str] = None  # added to every example that has none
    split: SplitConfig = field(default_factory=SplitConfig)
