"""A key the user sets on the command line must take effect: refuse it when another setting shadows it.

``model.name_or_path=org/model`` on a tiny recipe trained the tiny model (built from ``model.tiny``), while
config.yaml and summary.json named the given path; ``hparams.epochs=3`` on a recipe with ``hparams.max_steps=40``
trained 40 steps. Each rule below names a key, the key that wins over it, and when it wins; a user-set key
that loses is refused at compose time, in one line naming both keys and how to make the given one count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tuneforge.schema.run import RunConfig


@dataclass(frozen=True)
class Shadow:
    key: str  # the key that is ignored (a key under it counts too: model.gguf.file for model.gguf)
    by: str  # the key that wins
    active: Callable[[RunConfig], bool]  # whether ``by`` wins in this run
    value: Callable[[RunConfig], object]  # the winning value, for the message (None: a whole group)
    fix: str  # how to make ``key`` count instead


def _local_build(run: RunConfig) -> bool:
    return run.model.init == "random"


SHADOWS: tuple[Shadow, ...] = (
    # tuneforge.models.local_model_dir: random init, then model.tiny, then model.gguf, then model.package
    Shadow("model.name_or_path", "model.tiny", lambda r: r.model.tiny is not None, lambda r: None,
           "add model.tiny=null to load model.name_or_path, or pick a model group: model=<name>"),
    Shadow("model.name_or_path", "model.gguf", lambda r: r.model.gguf is not None and not _local_build(r),
           lambda r: r.model.gguf.file if r.model.gguf else None,
           "add model.gguf=null to load model.name_or_path, or pick a model group: model=<name>"),
    Shadow("model.name_or_path", "model.package", lambda r: bool(r.model.package) and not _local_build(r),
           lambda r: r.model.package, "add model.package=null to load model.name_or_path"),
    Shadow("model.gguf", "model.tiny", lambda r: r.model.tiny is not None and r.model.gguf is not None,
           lambda r: None, "add model.tiny=null"),
    Shadow("model.gguf", "model.init", lambda r: _local_build(r) and r.model.gguf is not None,
           lambda r: r.model.init, "add model.init=pretrained"),
    Shadow("model.package", "model.tiny", lambda r: r.model.tiny is not None and bool(r.model.package),
           lambda r: None, "add model.tiny=null"),
    Shadow("model.package", "model.gguf", lambda r: r.model.gguf is not None and bool(r.model.package),
           lambda r: None, "add model.gguf=null"),
    Shadow("model.package", "model.init", lambda r: _local_build(r) and bool(r.model.package),
           lambda r: r.model.init, "add model.init=pretrained"),
    # the trainers: max_steps > 0 overrides the epochs; warmup_steps > 0 overrides the warmup ratio
    Shadow("hparams.epochs", "hparams.max_steps", lambda r: r.hparams.max_steps > 0,
           lambda r: r.hparams.max_steps, "add hparams.max_steps=-1 to train for hparams.epochs"),
    Shadow("optim.warmup_ratio", "optim.warmup_steps", lambda r: r.optim.warmup_steps > 0,
           lambda r: r.optim.warmup_steps, "add optim.warmup_steps=0 to warm up by the ratio"),
)


def user_set_keys(overrides: Sequence[str]) -> dict[str, str]:
    """key -> value of each ``key=value`` (or ``+key=value``) the user typed; group choices included."""
    keys: dict[str, str] = {}
    for ov in overrides:
        if "=" not in ov or ov.startswith("~"):
            continue
        key, _, value = ov.lstrip("+").partition("=")
        keys[key.split("@", 1)[0]] = value
    return keys


def _set(key: str, given: dict[str, str]) -> str | None:
    """The typed key that sets ``key`` (itself, or a key under it), if any."""
    return next((k for k in given if k == key or k.startswith(key + ".")), None)


def shadow_problems(run: RunConfig, overrides: Sequence[str]) -> Iterable[str]:
    given = user_set_keys(overrides)
    reported: set[str] = set()
    for s in SHADOWS:
        typed = _set(s.key, given)
        if typed is None or typed in reported or not s.active(run):
            continue
        if given.get(s.by) in ("null", "None", "~"):
            continue  # the user removed the winner: nothing shadows the key
        reported.add(typed)
        v = s.value(run)
        winner = f"{s.by}={v}" if v is not None else f"{s.by} is set and"
        yield f"{typed}={given[typed]} would be ignored: {winner} takes precedence over {s.key}; {s.fix}"
