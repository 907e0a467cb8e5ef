"""Backend registry: adding a backend = one module + one entry here. Modules import heavy deps lazily."""

from __future__ import annotations

from typing import Any

from tuneforge.backends.axolotl import AxolotlBackend
from tuneforge.backends.native import NativeBackend

BACKENDS: dict[str, Any] = {
    "native": NativeBackend(),
    "axolotl": AxolotlBackend(),
    # "openai": OpenAIBackend(),    (hosted fine-tuning)
}


def get_backend(name: str) -> Any:
    from tuneforge.errors import ConfigError

    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"backend.name={name!r} is not valid; choose one of: {', '.join(BACKENDS)}") from None
