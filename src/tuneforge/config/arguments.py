"""Command-line arguments in plain words: the slips a new user makes, each answered with the corrected command.

    tuneforge train --recipe lora-tiny     ->  did you mean: tuneforge train recipe=lora-tiny
    tuneforge train optim.lr 1e-4          ->  did you mean: tuneforge train optim.lr=1e-4
    tuneforge train my.yaml                ->  the recipe file my.yaml (also recipe=./my.yaml)
    tuneforge train lr=1e-4                ->  unknown config key 'lr' (did you mean 'optim.lr'?)   [suggest.py]

A recipe file outside ``recipes/`` is composed like a named recipe: Hydra finds it through a search-path
entry (``hydra.searchpath``) pointing at a private copy laid out as ``<dir>/recipe/<name>.yaml``.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from pathlib import Path

from tuneforge.errors import ConfigError

RECIPE_SUFFIXES = (".yaml", ".yml")


def _is_recipe_path(value: str) -> bool:
    return value.endswith(RECIPE_SUFFIXES) or value.startswith(("./", "../", "/", "~/"))


def recipe_file_overrides(value: str) -> list[str]:
    """``recipe=<file>`` as overrides Hydra understands (a file in recipes/ becomes its plain name)."""
    from tuneforge.paths import cache_dir, recipes_dir

    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"recipe file {value} not found (named recipes: `tuneforge recipes`; "
                          f"a copy to edit: tuneforge cp <recipe> {value})")
    path = path.resolve()
    if path.parent == recipes_dir().resolve():
        return [f"recipe={path.stem}"]
    text = path.read_text(encoding="utf-8")
    if "# @package _global_" not in text.splitlines()[:3]:
        raise ConfigError(f"{value}: a recipe file opens with the line '# @package _global_' (so its keys are "
                          f"top-level, like recipes/*.yaml); `tuneforge cp <recipe> {value}` makes one")
    digest = hashlib.sha256(f"{path}\n{text}".encode()).hexdigest()[:12]
    root = cache_dir() / "recipe-files" / digest
    copy = root / "recipe" / f"{path.stem}.yaml"
    from tuneforge.secrets import redact_recipe_text

    _check_yaml(value, text)
    if not copy.is_file():  # the private copy holds no credential: those come back as overrides, in memory
        from tuneforge.rundir import atomic_write_text

        atomic_write_text(copy, redact_recipe_text(text))
    return [f"recipe={path.stem}", f"hydra.searchpath=[file://{root}]", *_secret_overrides(value, text)]


def _check_yaml(value: str, text: str) -> None:
    """A YAML error is reported against the user's file and line, not against tuneforge's private copy."""
    import yaml

    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{value}:{mark.line + 1}:{mark.column + 1}" if mark is not None else value
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({what}); fix the recipe file") from None


def _secret_overrides(value: str, text: str) -> list[str]:
    """``++key='secret'`` for each credential in a recipe file, so the composed config holds the user's value
    while the cached copy (on disk) holds none."""
    import yaml

    from tuneforge.secrets import secret_items

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    out = []
    for key, v in secret_items(data):
        s = str(v)
        if "'" in s or "\\" in s:
            raise ConfigError(f"{value}: the secret under '{key}' contains a quote or backslash; pass it through "
                              "the environment instead")
        out.append(f"++{key}='{s}'")
    return out


def recipes_dir_names() -> list[str]:
    from tuneforge.paths import recipes_dir

    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def normalize_overrides(args: Sequence[str], command: str = "train") -> list[str]:
    """Hydra overrides from what the user typed; a slip raises ConfigError with the corrected command."""
    out: list[str] = []
    fixed: list[str] = []
    problem = ""
    i = 0
    args = list(args)
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a.startswith("--") and len(a) > 2:
            key, sep, value = a[2:].partition("=")
            took = 1
            if not sep and nxt is not None and "=" not in nxt and not nxt.startswith("-"):
                value, took = nxt, 2
            if value or sep:
                fixed.append(f"{key}={value}")
                problem = problem or f"'{' '.join(args[i:i + took])}': tuneforge takes key=value, not --options"
            else:
                fixed.append(a)
                problem = problem or f"unknown option '{a}'"
            i += took
            continue
        if a.startswith("~") and not a.startswith("~/"):
            key = a[1:].split("=", 1)[0]
            raise ConfigError(f"'{a}' deletes {key} (Hydra's ~key), but every tuneforge setting has a value: set it "
                              f"instead ({key}=<value>, or {key}=null where null is allowed)")
        if "=" not in a:
            if _is_recipe_path(a):
                out += recipe_file_overrides(a)
                fixed.append(f"recipe={a}")
            elif nxt is not None and "=" not in nxt and not nxt.startswith("-"):
                fixed.append(f"{a}={nxt}")
                problem = problem or f"'{a} {nxt}': an override is one word, key=value"
                i += 1
            elif (recipes_dir_names() and a in recipes_dir_names()):
                fixed.append(f"recipe={a}")
                problem = problem or f"'{a}' is not key=value"
            else:
                fixed.append(a)
                problem = problem or f"'{a}' is not key=value"
            i += 1
            continue
        key, _, value = a.partition("=")
        if key.lstrip("+~") == "recipe" and _is_recipe_path(value):
            out += recipe_file_overrides(value)
        else:
            out.append(a)
        fixed.append(a)
        i += 1
    if problem:
        raise ConfigError(f"{problem}; did you mean: tuneforge {command} {shlex.join(fixed)}")
    return out
