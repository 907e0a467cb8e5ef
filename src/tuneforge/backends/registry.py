"""Backend registry: adding a backend = one module + one line here.

Entries are import paths, imported on first use: validating or planning a run loads only the backend it
names (and each backend module imports its heavy dependencies lazily too).
"""

from __future__ import annotations

from functools import cache

from tuneforge.schema.components import Backend, load_component

BACKENDS: dict[str, str] = {
    "native": "tuneforge.backends.native:NativeBackend",
    "axolotl": "tuneforge.backends.axolotl:AxolotlBackend",
    "openai": "tuneforge.backends.openai_hosted:OpenAIBackend",  # hosted fine-tuning (OpenAI's servers)
    "sentence-transformers": "tuneforge.backends.sentence_transformers:SentenceTransformersBackend",  # embeddings
}


@cache
def get_backend(name: str) -> Backend:
    return load_component(BACKENDS, "backend.name", name)
