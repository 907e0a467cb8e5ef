"""Evaluation schema (what runs after training and in ``tuneforge eval``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    after_training: bool = False  # evaluate on the test split when training ends
    max_samples: int = 64
    max_new_tokens: int = 128
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
