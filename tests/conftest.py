"""Shared fixtures. Tests run offline; tiny models are built once per session into a shared cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole session (tiny model + prepared datasets), unless TUNEFORGE_CACHE is set."""
    if "TUNEFORGE_CACHE" not in os.environ:
        os.environ["TUNEFORGE_CACHE"] = str(REPO / ".cache")
    return Path(os.environ["TUNEFORGE_CACHE"])


@pytest.fixture
def out_root(tmp_path: Path) -> Path:
    """An output root for runs made by a test (override: output_root=<this>)."""
    d = tmp_path / "outputs"
    return d


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


def tiny_overrides(recipe: str, out_root: Path, *extra: str) -> list[str]:
    return [f"recipe={recipe}", f"output_root={out_root}", *extra]
