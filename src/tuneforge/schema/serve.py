"""Serving schema: ``tuneforge serve run=<dir> [serve.<key>=value ...]`` (an OpenAI-compatible server)."""

from __future__ import annotations

from dataclasses import dataclass

# the environment variable whose value, when set, every /v1 request must send as ``Authorization: Bearer``;
# the key itself is never a config value (config values are written to disk and printed)
API_KEY_ENV = "TUNEFORGE_SERVE_API_KEY"
DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback by default: nothing outside this machine can reach the model
    port: int = 8000
    device: str = "auto"  # one of DEVICES
    # the adapter is merged into its base (tuneforge merge, parity-checked) and the merged model is served;
    # false refuses a run without merged/ instead of merging it
    merge: bool = True
    log_level: str = "info"  # one of LOG_LEVELS
