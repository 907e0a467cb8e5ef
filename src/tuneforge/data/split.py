"""Grouped, deterministic train/val/test split.

Every example carries a group (the source pair it was augmented from, an explicit group field, or else its
normalized question). Groups, never examples, are assigned to splits, so variants of one question never
straddle splits and the test score does not measure memorization. Groups are ordered by a seeded hash of
the group key, so the assignment is the same on every run and for every row order, and adding rows moves few
groups. Val and test are filled to their share of *examples* first (one group may overshoot by its size);
the rest is train. Over EXACT_LIMIT examples the per-group draw replaces the exact cut (see assign_splits).
"""

from __future__ import annotations

import numpy as np

from tuneforge.schema.dataset import SplitConfig

TRAIN, VAL, TEST = 0, 1, 2
EXACT_LIMIT = 200_000
SPLIT_NAMES = ("train", "val", "test")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a well-spread, platform-independent permutation of uint64."""
    x = x.copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _seeded(groups: np.ndarray, seed: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix64(groups ^ _mix64(np.array([seed], dtype=np.uint64))[0])


def assign_splits(groups: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """groups: uint64 group hash per example -> split id (TRAIN/VAL/TEST) per example.

    Up to EXACT_LIMIT examples, groups are cut at the exact ratios in seeded-hash order. Above it, each
    group's seeded hash picks its split directly (a uniform draw per group: at that size the shares are
    within a fraction of a percent of the ratios, with no sort of all groups and no extra memory).
    """
    n = groups.size
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    if n > EXACT_LIMIT and cfg.train > 0:
        u = (_seeded(groups, cfg.seed) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        return np.where(u < cfg.val, VAL, np.where(u < cfg.val + cfg.test, TEST, TRAIN)).astype(np.int8)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.argsort(_seeded(uniq, cfg.seed), kind="stable")
    n_val, n_test = round(n * cfg.val), round(n * cfg.test)
    if len(uniq) >= 3:  # a non-zero share gets at least one group
        n_val = max(n_val, 1) if cfg.val > 0 else 0
        n_test = max(n_test, 1) if cfg.test > 0 else 0
    start = np.cumsum(counts[order]) - counts[order]  # examples before each group, in seeded order
    group_split = np.full(len(uniq), TRAIN, dtype=np.int8)
    ordered = np.where(start < n_val, VAL, np.where(start < n_val + n_test, TEST, TRAIN)).astype(np.int8)
    group_split[order] = ordered
    if cfg.train == 0:  # everything into val/test in proportion (an eval-only dataset)
        group_split[order] = np.where(start < n * cfg.val / max(cfg.val + cfg.test, 1e-12), VAL, TEST)
    return group_split[inverse]
