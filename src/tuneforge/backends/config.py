"""Backend schemas: shared fields in ``BackendConfig``, backend-specific ones in subclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class BackendConfig:
    name: str = MISSING  # a key of tuneforge.backends.registry.BACKENDS
    # escape hatch: keys passed verbatim to the backend's native config (TrainingArguments, axolotl YAML, ...)
    additional_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class NativeBackendConfig(BackendConfig):
    name: str = "native"
    # train on the assistant turns only (prompt tokens are masked out of the loss)
    assistant_only_loss: bool = True


@dataclass
class AxolotlBackendConfig(BackendConfig):
    name: str = "axolotl"


@dataclass
class OpenAIBackendConfig(BackendConfig):
    name: str = "openai"
    base_model: str = "gpt-4o-mini-2024-07-18"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
