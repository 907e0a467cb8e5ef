"""Shared fixtures. Tests run offline; tiny models are built once per session into a shared cache."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(autouse=True)
def _restore_logging_state() -> object:
    """Entry points called in-process (``cli.main``) configure tuneforge's logging once per process; each
    test starts from, and leaves, the logging state it found, so no test depends on another's leftovers.
    (pytest's own capture handlers on the root logger change between phases and are left to pytest.)"""
    import logging

    tf, root = logging.getLogger("tuneforge"), logging.getLogger()
    saved = list(tf.handlers), tf.level, tf.propagate, root.level
    yield
    handlers, level, propagate, root_level = saved
    for h in [h for h in tf.handlers if h not in handlers]:
        tf.removeHandler(h)
    for h in handlers:
        if h not in tf.handlers:
            tf.addHandler(h)
    tf.setLevel(level)
    tf.propagate = propagate
    for h in [h for h in root.handlers if (h.get_name() or "").startswith("tuneforge")]:
        root.removeHandler(h)
    root.setLevel(root_level)


@pytest.fixture
def out_root(tmp_path: Path) -> Path:
    """An output root for runs made by a test (override: output_root=<this>)."""
    d = tmp_path / "outputs"
    return d


@contextlib.contextmanager
def serving_standin(monkeypatch: pytest.MonkeyPatch, key: str) -> Iterator[Any]:
    """The OpenAI stand-in on 127.0.0.1, with OPENAI_BASE_URL and OPENAI_API_KEY pointing at it (a test's own
    key, so it can check the key never reaches anything a run writes); stopped afterwards."""
    from tuneforge.openai_standin import StandIn

    s = StandIn(api_key=key)
    monkeypatch.setenv("OPENAI_BASE_URL", s.start())
    monkeypatch.setenv("OPENAI_API_KEY", key)
    try:
        yield s
    finally:
        s.stop()


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


def tiny_overrides(recipe: str, out_root: Path, *extra: str) -> list[str]:
    return [f"recipe={recipe}", f"output_root={out_root}", *extra]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that start a Ray head, use Slurm or start several processes are integration tests too
    (`make test-integration`); `make test` is the rest."""
    for item in items:
        if any(item.get_closest_marker(m) for m in ("ray", "slurm", "distributed")):
            item.add_marker(pytest.mark.integration)
