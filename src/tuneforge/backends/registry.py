"""Backend registry: adding a backend = one module + one line here.

Entries are import paths, imported on first use: validating or planning a run loads only the backend it
names (and each backend module imports its heavy dependencies lazily too).
"""

from __future__ import annotations

import importlib
from functools import cache

from tuneforge.errors import ConfigError
from tuneforge.schema.components import Backend

BACKENDS: dict[str, str] = {
    "native": "tuneforge.backends.native:NativeBackend",
    "axolotl": "tuneforge.backends.axolotl:AxolotlBackend",
    "openai": "tuneforge.backends.openai_hosted:OpenAIBackend",  # hosted fine-tuning (OpenAI's servers)
    "sentence-transformers": "tuneforge.backends.sentence_transformers:SentenceTransformersBackend",  # embeddings
}


@cache
def get_backend(name: str) -> Backend:
    try:
        module, attr = BACKENDS[name].split(":")
    except KeyError:
        raise ConfigError(f"backend.name={name!r} is not valid; choose one of: {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module), attr)()
