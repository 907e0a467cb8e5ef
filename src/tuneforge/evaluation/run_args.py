"""Arguments of the commands that act on a finished run (``eval``, ``merge``, ``chat``):

    run=<run_dir>  [option=value ...]  [eval.<key>=value ...]

``eval.*`` overrides the run's decoding/eval settings for this command only (the run's config.yaml is not
changed); they are typed and range-checked like any config key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.schema.evaluation import EvalConfig


@dataclass(frozen=True)
class RunArgs:
    run_dir: Path
    options: dict[str, str]
    eval_overrides: list[str]  # "key=value" without the "eval." prefix

    def flag(self, name: str, default: bool) -> bool:
        value = self.options.get(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r} is not a boolean; use {name}=true or {name}=false")


def parse_run_args(command: str, args: list[str], options: dict[str, str]) -> RunArgs:
    """``options``: the command's own keys and their help. Unknown keys fail with the valid ones listed."""
    run_dir: str | None = None
    root: str | None = None  # where run=latest / run=<recipe> look (default: outputs)
    opts: dict[str, str] = {}
    overrides: list[str] = []
    eval_keys = [f.name for f in fields(EvalConfig)]
    options = {**options, "base": "replace the run's base model (hub id or directory)"}
    valid = ["run", "output_root", *options, *(f"eval.{k}" for k in eval_keys)]
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if not sep:
            raise ConfigError(f"tuneforge {command}: expected key=value, got {arg!r}\n  valid keys: "
                              + ", ".join(valid))
        if key == "run":
            run_dir = value
        elif key == "output_root":
            root = value
        elif key in options:
            opts[key] = value
        elif key.startswith("eval.") and key[5:].split(".")[0] in eval_keys:  # eval.retriever.run: nested
            overrides.append(f"{key[5:]}={value}")
        else:
            hint = difflib.get_close_matches(key, valid, n=1)
            raise ConfigError(f"tuneforge {command}: unknown key '{key}'"
                              + (f" (did you mean '{hint[0]}'?)" if hint else "")
                              + "\n  valid keys: " + ", ".join(valid))
    from tuneforge.runs import recent_runs_hint, resolve_run

    if not run_dir:  # `make eval` without run=: say which runs there are
        raise ConfigError(f"tuneforge {command}: run=<run_dir> is required (or run=latest, run=<recipe>), e.g. "
                          f"tuneforge {command} run=latest\n{recent_runs_hint()}")
    return RunArgs(resolve_run(run_dir, root) if root else resolve_run(run_dir), opts, overrides)


def eval_config_with(base: EvalConfig, overrides: list[str]) -> EvalConfig:
    """``base`` with ``key=value`` overrides applied, typed by the schema and range-checked."""
    from omegaconf import OmegaConf

    if not overrides:
        return base
    try:
        merged = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.from_dotlist(overrides))
        cfg = OmegaConf.to_object(merged)
    except Exception as exc:  # noqa: BLE001 - OmegaConf's validation errors have several types
        first = str(exc).strip().splitlines()[0]
        given = ", ".join("eval." + o for o in overrides)
        raise ConfigError(f"invalid eval override ({given}): {first}") from None
    from tuneforge.evaluation.checks import check_eval_config

    problems = list(check_eval_config(cfg))  # type: ignore[arg-type]
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return cfg  # type: ignore[return-value]
