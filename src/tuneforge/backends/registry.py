"""Backend registry: adding a backend = one module + one entry here. Modules import heavy deps lazily."""

from __future__ import annotations

from tuneforge.backends.axolotl import AxolotlBackend
from tuneforge.backends.base import Backend
from tuneforge.backends.native import NativeBackend
from tuneforge.backends.openai_hosted import OpenAIBackend
from tuneforge.backends.sentence_transformers import SentenceTransformersBackend

BACKENDS: dict[str, Backend] = {
    "native": NativeBackend(),
    "axolotl": AxolotlBackend(),
    "openai": OpenAIBackend(),  # hosted fine-tuning (OpenAI's servers)
    "sentence-transformers": SentenceTransformersBackend(),  # embedding models (retrieval)
}


def get_backend(name: str) -> Backend:
    from tuneforge.errors import ConfigError

    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"backend.name={name!r} is not valid; choose one of: {', '.join(BACKENDS)}") from None
