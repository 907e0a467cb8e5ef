"""Token statistics of the prepared splits and the estimated OpenAI fine-tuning cost.

Padding waste: examples batched ``micro_batch_size`` at a time in a seeded random order (as the trainer's
sampler does), each batch padded to its longest example. Packing efficiency: examples (truncated to
seq_len) packed best-fit-decreasing into seq_len rows, as TRL's ``packing_strategy="bfd"`` does; over
20,000 examples the ideal bound ceil(tokens / seq_len) rows is used instead (BFD gets within a row or two of
it for short examples).
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

# USD per 1M *training* tokens, from OpenAI's pricing page. Prices change: update the date with the numbers.
OPENAI_TRAINING_PRICES: dict[str, Any] = {
    "as_of": "2024-08-06",
    "source": "https://openai.com/api/pricing (fine-tuning, training tokens)",
    "usd_per_1m_training_tokens": {
        "gpt-4o-mini-2024-07-18": 3.00,
        "gpt-4o-2024-08-06": 25.00,
        "gpt-3.5-turbo": 8.00,
    },
}
OPENAI_DEFAULT_EPOCHS = 3  # what the cost table assumes when the run is bounded by max_steps, not epochs
_BFD_LIMIT = 20_000


def length_summary(lengths: np.ndarray) -> dict[str, Any]:
    if lengths.size == 0:
        return {"count": 0, "total": 0, "min": None, "median": None, "p95": None, "max": None, "mean": None}
    return {
        "count": int(lengths.size),
        "total": int(lengths.sum()),
        "min": int(lengths.min()),
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "mean": round(float(lengths.mean()), 1),
    }


def padding_waste(lengths: np.ndarray, seq_len: int, micro_batch_size: int, seed: int = 0) -> float:
    if lengths.size == 0:
        return 0.0
    clipped = np.minimum(lengths, seq_len)[np.random.default_rng(seed).permutation(lengths.size)]
    n_full = clipped.size // micro_batch_size * micro_batch_size
    padded = int(clipped[:n_full].reshape(-1, micro_batch_size).max(axis=1).sum()) * micro_batch_size
    rest = clipped[n_full:]
    padded += int(rest.max()) * rest.size if rest.size else 0
    return 1.0 - float(clipped.sum()) / padded


def packed_rows(lengths: np.ndarray, seq_len: int) -> int:
    clipped = np.minimum(lengths, seq_len)
    if clipped.size > _BFD_LIMIT:
        return math.ceil(int(clipped.sum()) / seq_len)
    free: list[int] = []  # remaining capacity of each open row, kept sorted
    for n in sorted(clipped.tolist(), reverse=True):
        i = bisect.bisect_left(free, n)
        if i == len(free):
            bisect.insort(free, seq_len - n)
        else:
            left = free.pop(i) - n
            bisect.insort(free, left)
    return len(free)


def packing_efficiency(lengths: np.ndarray, seq_len: int) -> float:
    if lengths.size == 0:
        return 0.0
    return float(np.minimum(lengths, seq_len).sum()) / (packed_rows(lengths, seq_len) * seq_len)


def openai_cost(train_tokens: int, epochs: float) -> dict[str, Any]:
    prices = OPENAI_TRAINING_PRICES["usd_per_1m_training_tokens"]
    return {
        "as_of": OPENAI_TRAINING_PRICES["as_of"],
        "source": OPENAI_TRAINING_PRICES["source"],
        "train_tokens": train_tokens,
        "epochs": epochs,
        "usd": {model: round(train_tokens * epochs / 1e6 * p, 4) for model, p in prices.items()},
        "usd_per_epoch": {model: round(train_tokens / 1e6 * p, 4) for model, p in prices.items()},
    }


def cost_epochs(hparams: Any) -> float:
    """The run's epochs, or OpenAI's usual default when the run is bounded by max_steps."""
    if hparams is None or getattr(hparams, "max_steps", -1) > 0:
        return OPENAI_DEFAULT_EPOCHS
    return float(hparams.epochs)


def token_stats(lengths: np.ndarray, splits: np.ndarray | None, *, seq_len: int, max_tokens: int,
                micro_batch_size: int, counter_name: str) -> dict[str, Any]:
    """lengths: tokens per kept example; splits: 0 train / 1 val / 2 test for each (None: not split, a lint)."""
    if splits is None:
        splits = np.zeros(lengths.size, dtype=np.int8)
        per_split = {"all": length_summary(lengths)}
    else:
        per_split = {name: length_summary(lengths[splits == i]) for i, name in enumerate(("train", "val", "test"))}
    return {
        "tokenizer": counter_name,
        "seq_len": seq_len,
        "max_tokens": max_tokens,
        "micro_batch_size": micro_batch_size,
        "per_example": length_summary(lengths),
        "per_split": per_split,
        "over_seq_len": int((lengths > seq_len).sum()),
        "over_max_tokens": int((lengths > max_tokens).sum()),
        "padding_waste": round(padding_waste(lengths[splits == 0], seq_len, micro_batch_size), 4),
        "packing_efficiency": round(packing_efficiency(lengths[splits == 0], seq_len), 4),
        "batching_measured_on": "train split" if "train" in per_split else "all examples",
    }
