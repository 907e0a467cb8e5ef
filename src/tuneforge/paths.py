"""Where the project's config tree lives, independent of the current directory."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding conf/ and recipes/ (the package is installed editable from it).

    TUNEFORGE_HOME overrides it for installs that keep conf/ elsewhere.
    """
    env = os.environ.get("TUNEFORGE_HOME")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    return project_root() / "conf"


def recipes_dir() -> Path:
    return project_root() / "recipes"


def cache_dir() -> Path:
    """Disk cache for locally built tiny models and prepared datasets."""
    env = os.environ.get("TUNEFORGE_CACHE")
    return Path(env).resolve() if env else project_root() / ".cache"
