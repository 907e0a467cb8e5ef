"""Compose a run config from conf/ + recipes/ + overrides, and turn Hydra's errors into clear ones."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tuneforge.errors import ConfigError
from tuneforge.paths import conf_dir
from tuneforge.schema.run import RunConfig
from tuneforge.schema.store import register_configs


def compose_config(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """Compose with Hydra's compose API. Raises ConfigError with a message naming the key and valid choices."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    overrides = list(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="tuneforge"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=return_hydra_config)
    except Exception as exc:  # Hydra raises several exception types; all are user errors here
        raise ConfigError(explain_compose_error(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def to_run_config(cfg: DictConfig) -> RunConfig:
    """DictConfig -> typed RunConfig (dataclass instances all the way down), resolving interpolations."""
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    import dataclasses

    allowed = {f.name for f in dataclasses.fields(RunConfig)}
    extra = sorted(str(k) for k in cfg if k not in allowed)
    if extra:
        from tuneforge.config.suggest import key_suggestions

        hint = difflib.get_close_matches(extra[0], allowed, n=1) or key_suggestions(extra[0])
        raise ConfigError(
            f"unknown config key '{extra[0]}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
            + f"\n  valid top-level keys: {', '.join(sorted(allowed))}"
        )
    try:
        obj = OmegaConf.to_object(cfg)
    except Exception as exc:
        raise ConfigError(explain_compose_error(exc)) from None
    assert isinstance(obj, RunConfig), type(obj)
    return obj


def load_run_config(overrides: Sequence[str] = (), command: str = "train") -> RunConfig:
    """Compose, type and validate: the one way a RunConfig is made from the command line.

    ``overrides`` are what the user typed (a recipe file, or a slip such as ``--recipe x``, is handled by
    :func:`tuneforge.config.arguments.normalize_overrides`; ``command`` names the command in its advice)."""
    from tuneforge.config.arguments import normalize_overrides
    from tuneforge.config.validate import validate

    run = to_run_config(compose_config(normalize_overrides(overrides, command)))
    check_added_keys(run, overrides)
    from tuneforge.config.shadowing import shadow_problems

    shadowed = list(shadow_problems(run, overrides))
    if shadowed:
        raise ConfigError("; ".join(shadowed))
    from tuneforge.config.shadowing import user_set_keys

    here = Path(run.dataset.path).expanduser()
    if "dataset.path" in user_set_keys(overrides) and not here.is_absolute() and here.is_file():
        run.dataset.path = str(here.resolve())  # a file typed on the command line is where the user is
    if run.run_dir == "latest":  # resume the newest run of this recipe: its checkpoints are picked up
        from tuneforge.runs import find_runs

        found = find_runs(run.output_root, run.name)
        if not found:
            raise ConfigError(f"run_dir=latest: no run of {run.name} under {run.output_root}/ to resume")
        run.run_dir = str(found[0].path.resolve())
    from tuneforge.config.objective_checks import resolve_init

    resolve_init(run)  # init.run=latest -> the parent's directory, recorded in config.yaml
    validate(run)
    from tuneforge.rundir import explicit_run_dir

    if run.run_dir and not Path(run.run_dir).is_absolute():  # under output_root; recorded as an absolute path
        run.run_dir = str(explicit_run_dir(run).resolve())  # type: ignore[union-attr]
    return run


def check_added_keys(run: RunConfig, overrides: Sequence[str]) -> None:
    """A ``+key=value`` adds a key Hydra's struct check would refuse; typing the config into RunConfig then
    drops it without a word (``+optim.lrr=1e-4``). Every added key must survive typing: be a field, or sit
    under a free-form mapping (``+launcher.env.X``, ``+backend.additional_parameters.x``)."""
    import dataclasses

    typed = dataclasses.asdict(run)
    for ov in overrides:
        if not ov.startswith("+") or "=" not in ov:
            continue
        key = ov.lstrip("+").split("=", 1)[0].split("@", 1)[0]
        if key.startswith("hydra.") or key == "hydra" or (conf_dir() / key.replace(".", "/")).is_dir():
            continue  # a config group (+sweep=grid) or Hydra's own settings
        node: object = typed
        parts = key.split(".")
        for i, part in enumerate(parts):
            if isinstance(node, dict) and part in node:
                node = node[part]
                continue
            parent = ".".join(parts[:i])
            valid = sorted(map(str, node)) if isinstance(node, dict) else []
            hint = difflib.get_close_matches(part, valid, n=1)
            where = f"'{parent}'" if parent else "the root"
            raise ConfigError(
                f"unknown config key '{key}' (added with '+')"
                + (f" (did you mean '{(parent + '.') if parent else ''}{hint[0]}'?)" if hint else "")
                + (f"\n  valid keys under {where}: {', '.join(valid)}" if valid else
                   f"\n  '{parent}' holds a value, not keys"))


# --- error messages -----------------------------------------------------------------------------------

_KEY_NOT_IN = re.compile(r"Key '(?P<key>[^']+)' not in '(?P<type>[^']+)'")
_FULL_KEY = re.compile(r"full_key: (?P<full>\S+)")


def _valid_keys(full_key: str) -> list[str]:
    """The keys the schema allows at the parent of ``full_key``."""
    node = OmegaConf.structured(RunConfig)
    parts = full_key.split(".")[:-1]
    try:
        for p in parts:
            node = node[p]
    except Exception:
        return []
    if isinstance(node, DictConfig) and node._is_missing():
        return []
    return sorted(str(k) for k in node) if isinstance(node, DictConfig) else []


def _keys_of_group_option(full_key: str) -> list[str]:
    """Group nodes are MISSING in the bare schema; read their dataclass fields instead."""
    import dataclasses
    import typing

    parts = full_key.split(".")[:-1]
    tp: type = RunConfig
    for p in parts:
        hints = typing.get_type_hints(tp)
        if p not in hints:
            return []
        t = hints[p]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        tp = args[0] if args else t
        if not dataclasses.is_dataclass(tp):
            return []
    return sorted(f.name for f in dataclasses.fields(tp))


def _unparsable_override(msg: str) -> str | None:
    """Hydra's override grammar refused a value (characters it reserves, or letters outside ASCII unquoted):
    one line saying how to quote it, instead of the lexer's exception."""
    if not ("LexerNoViableAltException" in msg or "token recognition error" in msg or "mismatched input" in msg
            or "no viable alternative" in msg or "extraneous input" in msg):
        return None
    first = msg.splitlines()[0]
    quoted = re.search(r"Error parsing override '(.*)'$", first)
    override = quoted.group(1) if quoted else first.split(": ", 1)[1].strip() if ": " in first else first
    key, _, value = override.partition("=")
    bad = (re.search(r"token recognition error at: '(.+?)'", msg) or re.search(r"extraneous input '(.+?)'", msg)
           or re.search(r"mismatched input '(.+?)'", msg))
    why = f" ({bad.group(1)!r} is not allowed unquoted)" if bad else ""
    return (f"cannot parse the override {override!r}{why}: quote the value for Hydra, inside the shell's quotes, "
            f"e.g. '{key}=\"{value}\"'")


def explain_compose_error(exc: BaseException) -> str:
    msg = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip():
        msg = f"{msg}\n{str(cause).strip()}"
    unparsable = _unparsable_override(msg)
    if unparsable:
        return unparsable
    if "Config group override must be a string or a list" in msg:
        return ("a config group was given null (e.g. recipe=null): name one of its options, or leave the key out "
                "(`tuneforge recipes` lists the recipes)")
    if "Could not delete from config" in msg or "Could not find '" in msg and msg.startswith("~"):
        return (f"{msg.splitlines()[0]}: `~key` deletes a key, but every tuneforge setting has a value; set it "
                "instead (key=value), or `key=null` where null is allowed")
    m = _KEY_NOT_IN.search(msg)
    full = _FULL_KEY.search(msg)
    if m:
        full_key = full.group("full") if full else m.group("key")
        valid = _valid_keys(full_key) or _keys_of_group_option(full_key)
        leaf = full_key.split(".")[-1]
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else "<root>"
        hint = difflib.get_close_matches(leaf, valid, n=1)
        text = f"unknown config key '{full_key}'"
        if hint:
            text += f" (did you mean '{parent}.{hint[0]}'?)" if parent != "<root>" else f" (did you mean '{hint[0]}'?)"
        else:
            from tuneforge.config.suggest import key_suggestions

            elsewhere = key_suggestions(full_key)
            if elsewhere:
                text += f" (did you mean '{elsewhere[0]}'?)"
        if valid:
            text += f"\n  valid keys under '{parent}': {', '.join(valid)}"
        return text
    if "Could not find 'recipe/" in msg or "Could not load 'recipe/" in msg:
        from tuneforge.config.suggest import option_suggestion
        from tuneforge.paths import recipes_dir

        names = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
        bad = re.search(r"recipe/([^'\s]+)", msg)
        value = bad.group(1) if bad else "?"
        close = option_suggestion(value, names)
        return (f"unknown recipe '{value}'" + (f" (did you mean recipe={close}?)" if close else "")
                + f"\n  available recipes: {', '.join(names)} (`tuneforge recipes`; a file: recipe=./my.yaml)")
    option = re.search(r"Could not (?:find|load) '([\w-]+)/([^']+)'", msg)
    if option:
        from tuneforge.config.suggest import group_options, option_suggestion

        group, value = option.groups()
        options = [o for o in group_options(group) if not o.startswith("base_")]
        if options:
            close = option_suggestion(value, options)
            return (f"unknown {group} '{value}'" + (f" (did you mean {group}={close}?)" if close else "")
                    + f"\n  options in '{group}': {', '.join(options)}")
    if "Available options" in msg or "Could not find" in msg:
        # Hydra lists the group options; hide our schema entries (base_*) from the user.
        msg = re.sub(r"\n\s*base_\w+", "", msg)
        msg = msg.split("\nConfig search path")[0].split("\nKey '")[0]
        return re.sub(r"\n\s*\n", "\n", msg.replace("In 'config': ", "")).replace("\n\t", "\n  ").strip()
    bad_value = re.search(
        r"(Value '.*?' (?:of type '\w+' could not be converted to \w+|is not a valid \w+)[^\n]*)", msg)
    if bad_value:
        full_key = full.group("full") if full else "?"
        return f"wrong type for '{full_key}': {bad_value.group(1)}"
    noise = ("reference_type", "object_type")
    lines = [ln for ln in msg.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return "\n  ".join(lines[:4]) if lines else type(exc).__name__
