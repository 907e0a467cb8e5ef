"""Did-you-mean for config keys and group options, across groups (``lr`` -> ``optim.lr``)."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from functools import lru_cache

from tuneforge.paths import conf_dir


@lru_cache(maxsize=1)
def all_keys() -> tuple[str, ...]:
    """Every ``group.key`` the schemas define (each variant of a group included), plus the top-level keys."""
    from tuneforge.schema.run import RunConfig
    from tuneforge.schema.store import SCHEMAS

    keys: set[str] = set()
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        keys.add(f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.update(f"{f.name}.{g.name}" for g in dataclasses.fields(tp))
    for group, _, cls in SCHEMAS:
        if group:
            keys.update(f"{group}.{g.name}" for g in dataclasses.fields(cls))
    return tuple(sorted(keys))


def key_suggestions(full_key: str, n: int = 2) -> list[str]:
    """Keys in other groups that ``full_key`` probably meant: the same leaf name first, then close spellings."""
    leaf = full_key.split(".")[-1]
    keys = all_keys()
    same_leaf = [k for k in keys if k.split(".")[-1] == leaf and k != full_key]
    if same_leaf:
        return same_leaf[:n]
    leaves = {k.split(".")[-1]: k for k in keys if "." in k}
    return [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=n, cutoff=0.75)]


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def option_suggestion(value: str, options: list[str]) -> str | None:
    """Closest option, treating _ and - alike (``qlora_llama`` -> ``qlora-llama``, ``qlora2`` -> ``qlora``)."""
    norm = {o.replace("_", "-").lower(): o for o in options}
    v = value.replace("_", "-").lower()
    if v in norm:
        return norm[v]
    match = difflib.get_close_matches(v, list(norm), n=1, cutoff=0.6)
    return norm[match[0]] if match else None
