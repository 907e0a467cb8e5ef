"""``tuneforge recipes`` (each with its one-line purpose) and ``tuneforge cp <recipe> my.yaml`` (a copy to edit).

A copy is a recipe file like any other: ``tuneforge train my.yaml`` (or ``recipe=./my.yaml``) composes it.
Its ``name`` becomes the file's stem, so its runs land in ``outputs/<stem>/`` apart from the original's.
"""

from __future__ import annotations

import re
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.paths import recipes_dir


def recipe_purpose(path: Path) -> str:
    """The recipe's purpose: the first header comment that is not the package line or the command."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith(("@package", "Command:")):
            return text
    return ""


def recipes_table() -> str:
    paths = sorted(recipes_dir().glob("*.yaml"))
    width = max(len(p.stem) for p in paths)
    lines = [f"{p.stem:<{width}}  {recipe_purpose(p)}" for p in paths]
    lines += ["", "preview: tuneforge plan recipe=NAME   train: tuneforge train recipe=NAME   "
              "edit a copy: tuneforge cp NAME my.yaml"]
    return "\n".join(lines)


def copy_recipe(name: str, dest: Path, *, force: bool = False) -> Path:
    from tuneforge.config.suggest import option_suggestion

    src = recipes_dir() / f"{name}.yaml"
    if not src.is_file():
        names = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
        close = option_suggestion(name, names)
        raise ConfigError(f"unknown recipe '{name}'" + (f" (did you mean {close}?)" if close else "")
                          + f"; recipes: {', '.join(names)}")
    if dest.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"tuneforge cp {name} {dest}: the copy must end in .yaml")
    if dest.exists() and not force:
        raise ConfigError(f"{dest} exists; pick another name or pass --force")
    stem = dest.stem
    text = src.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^name: .*$", f"name: {stem}", text, count=1)
    text = text.replace(f"recipe={name}", f"recipe=./{dest.name}")
    text = text.replace("# @package _global_\n", f"# @package _global_\n# copied from recipes/{name}.yaml; "
                        f"train it: tuneforge train {dest}\n", 1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    return dest


def cmd_recipes(args: list[str]) -> int:
    if args:
        raise ConfigError("tuneforge recipes takes no arguments")
    print(recipes_table())
    return 0


def cmd_cp(args: list[str]) -> int:
    force = "--force" in args
    rest = [a for a in args if a != "--force"]
    if len(rest) != 2:
        raise ConfigError("usage: tuneforge cp <recipe> <my.yaml> [--force]   (recipes: tuneforge recipes)")
    dest = copy_recipe(rest[0], Path(rest[1]), force=force)
    print(f"wrote {dest} (name: {dest.stem}); edit it, then: tuneforge plan {dest}  /  tuneforge train {dest}")
    return 0
