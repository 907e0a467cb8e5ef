"""The base of tuneforge's Trainer callbacks (metrics.jsonl, the progress line, tracking, checkpoint seals,
preemption). transformers' CallbackHandler calls each event by name (``on_log``, ``on_step_end``, ...); every
event a callback does not define is a no-op here, so a callback needs no transformers import (``plan`` and the
console stay light) and no copy of this fallback."""

from __future__ import annotations

from typing import Any


class CallbackBase:
    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)
