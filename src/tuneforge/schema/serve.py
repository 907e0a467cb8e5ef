"""Serving schema: ``tuneforge serve run=<dir> [serve.<key>=value ...]`` (an OpenAI-compatible server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# the environment variable whose value, when set, every /v1 request must send as ``Authorization: Bearer``;
# the key itself is never a config value (config values are written to disk and printed)
API_KEY_ENV = "TUNEFORGE_SERVE_API_KEY"
DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class ABConfig:
    """Two arms behind one model id (``tuneforge serve run=A serve.ab.run_b=B``, or ``serve.ab.base=true`` for
    the run against its base model): each request goes to arm B with probability ``share``, decided by a hash
    of ``seed`` and the request's ``user`` (so a user stays on one arm) or else its id. Every answer and every
    rating (``POST /v1/feedback``) is appended to ``<run>/ab/log.jsonl``; ``tuneforge ab report`` reads it."""

    run_b: Optional[str] = None  # arm B: another run directory (run=latest-style names work too)
    base: bool = False  # arm B: the run's base model, with the run's chat template and decoding
    share: float = 0.5  # the share of requests arm B answers (0..1); arm A answers the rest
    seed: int = 0


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback by default: nothing outside this machine can reach the model
    port: int = 8000
    device: str = "auto"  # one of DEVICES
    # the server: transformers (in-process, CPU or GPU), vllm (`vllm serve`, CUDA; a LoRA run is served directly
    # as --lora-modules), auto = vllm where a CUDA GPU and vllm are present, else transformers (serve/vllm_engine.py)
    engine: str = "auto"
    # the adapter is merged into its base (tuneforge merge, parity-checked) and the merged model is served;
    # false refuses a run without merged/ instead of merging it
    merge: bool = True
    log_level: str = "info"  # one of LOG_LEVELS
    ab: ABConfig = field(default_factory=ABConfig)
