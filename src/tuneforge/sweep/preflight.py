"""Before a sweep starts: the sweep plan (each swept key composed with its first value, the sweep directory,
the Slurm -> submitit mapping)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.paths import conf_dir

log = logging.getLogger(__name__)


TRIAL_FILE = "trial.json"
DEFAULT_SWEEP = "grid"


def sweep_kinds() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / "sweep").glob("*.yaml"))


@dataclass
class SweepPlan:
    kind: str  # grid | optuna (a file in conf/sweep/)
    hydra_overrides: list[str]  # the multirun command line handed to Hydra
    swept: list[str]  # keys that vary across trials, in command-line order
    sweep_dir: Path
    name: str
    output_root: str
    storage: str | None = None  # Optuna's sqlite URL
    study_name: str | None = None
    notes: list[str] = field(default_factory=list)


# --- planning: parse, preflight, fix the sweep directory ---------------------------------------------


def _first_value(override: Any) -> str | None:
    """The first value a sweep override takes (what the preflight composes), as override text."""
    from hydra.core.override_parser.types import IntervalSweep
    from hydra.errors import HydraException

    value = override.value()
    if isinstance(value, IntervalSweep):
        return repr(value.start) if not isinstance(value.start, str) else value.start
    try:
        return next(iter(override.sweep_string_iterator()))
    except HydraException:  # glob() over a config group: enumerating it needs Hydra's config loader
        return None


def _slurm_launcher_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """Split ``launcher=slurm`` and ``launcher.*`` (sweep on Slurm) from the trial overrides."""
    launcher, rest = [], []
    for a in args:
        key = a.split("=", 1)[0].lstrip("+~")
        (launcher if key == "launcher" or key.startswith("launcher.") else rest).append(a)
    return launcher, rest


def _submitit_overrides(run: Any) -> list[str]:
    """hydra.launcher.* for submitit_slurm from a composed SlurmLauncherConfig."""
    from tuneforge.launch.slurm import parse_time_seconds

    c = run.launcher
    if c.nodes != 1:
        raise ConfigError(f"launcher.nodes={c.nodes}: a sweep on Slurm runs each trial as one task of a job "
                          "array on one node; use launcher.nodes=1 (or submit multi-node runs one by one "
                          "with tuneforge train launcher=slurm)")
    limit = parse_time_seconds(c.time)
    out = ["hydra/launcher=submitit_slurm", "hydra.launcher.nodes=1", "hydra.launcher.tasks_per_node=1",
           f"hydra.launcher.timeout_min={max(1, math.ceil(limit / 60)) if limit else 60 * 24 * 365}",
           f"hydra.launcher.gpus_per_node={c.gpus_per_node}",
           f"hydra.launcher.name={c.job_name or 'tuneforge-sweep-' + run.name}"]
    if c.cpus_per_task:
        out.append(f"hydra.launcher.cpus_per_task={c.cpus_per_task}")
    for key in ("partition", "qos", "constraint"):
        if getattr(c, key):
            out.append(f"hydra.launcher.{key}={getattr(c, key)}")
    extra = dict(c.additional_parameters)
    if c.account:
        extra["account"] = c.account
    if c.mem:
        extra["mem"] = c.mem
    if c.exclusive:
        extra["exclusive"] = True
    for k, v in extra.items():
        out.append(f"+hydra.launcher.additional_parameters.{k}={v}")
    if c.env_setup:
        out.append("hydra.launcher.setup=[" + ",".join(json.dumps(line) for line in c.env_setup) + "]")
    return out


def plan_sweep(args: list[str]) -> SweepPlan:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from tuneforge.config.compose import compose_config, load_run_config

    kind = DEFAULT_SWEEP
    rest: list[str] = []
    for a in args:
        if a.lstrip("+").startswith("sweep="):
            kind = a.split("=", 1)[1]
        else:
            rest.append(a)
    if kind not in sweep_kinds():
        raise ConfigError(f"sweep={kind!r} is not known; choose one of: {', '.join(sweep_kinds())} "
                          f"(files in {conf_dir() / 'sweep'})")
    launcher_args, rest = _slurm_launcher_overrides(rest)
    on_slurm = any(a.split("=", 1)[1] == "slurm" for a in launcher_args if a.split("=", 1)[0] == "launcher")
    if launcher_args and not on_slurm:
        rest = launcher_args + rest  # launcher=local etc.: the trials use it as they are
        launcher_args = []

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(rest)
    except OverrideParseException as exc:
        raise ConfigError(f"cannot parse the sweep overrides: {exc}") from None
    fixed, hydra_args, sweeps, swept, first = [], [], [], [], []
    for text, o in zip(rest, parsed, strict=True):
        if o.key_or_group.startswith("hydra.sweeper.params.") and o.is_sweep_override():
            # the sweepers merge command-line sweeps into their search space: the same thing, minus Hydra's
            # refusal to compose a sweep of its own config
            key = o.key_or_group[len("hydra.sweeper.params."):]
            text = f"{key}={text.split('=', 1)[1]}"
            (o,) = parser.parse_overrides([text])
        if o.key_or_group.startswith("hydra"):
            hydra_args.append(text)
        elif o.is_sweep_override():
            sweeps.append(text)
            swept.append(o.key_or_group)
            v = _first_value(o)
            if v is not None:
                first.append(f"{o.input_line.split('=', 1)[0]}={v}")
        else:
            fixed.append(text)

    # the search space a sweep file (or hydra.sweeper.params=...) declares counts as swept too
    cfg = compose_config([*fixed, *launcher_args, f"+sweep={kind}", *hydra_args], return_hydra_config=True)
    params = cfg.hydra.sweeper.get("params") or {}
    for key, spec in params.items():
        if key in swept:
            continue
        (o,) = parser.parse_overrides([f"{key}={spec}"])
        swept.append(key)
        v = _first_value(o) if o.is_sweep_override() else str(spec)
        if v is not None:
            first.append(f"{key}={v}")

    def preflight(extra: list[str]) -> Any:
        try:
            return load_run_config([*fixed, *launcher_args, *extra])
        except ConfigError as exc:
            keys = ", ".join(swept) or "(none)"
            raise ConfigError(f"sweep preflight (first value of each swept key: {keys}) failed: {exc}"
                              ) from None

    # each swept key alone first, so the error names the key that does not exist
    for f in first:
        preflight([f])
    run = preflight(first)

    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = (Path(run.output_root) / "sweeps" / run.name / stamp).resolve()
    n = 1
    while sweep_dir.exists():
        sweep_dir = sweep_dir.with_name(f"{stamp}-{n}")
        n += 1
    hydra_overrides = [f"+sweep={kind}", *fixed, *sweeps, *hydra_args,
                       f"hydra.sweep.dir={sweep_dir}"]
    plan = SweepPlan(kind=kind, hydra_overrides=hydra_overrides, swept=swept, sweep_dir=sweep_dir,
                     name=run.name, output_root=run.output_root)
    if on_slurm:
        plan.hydra_overrides += _submitit_overrides(run)
        plan.notes.append("trials run as a Slurm job array (hydra/launcher=submitit_slurm)")
        from tuneforge.launch.slurm import processes_per_node

        ppn = processes_per_node(run)
        if ppn > 1:  # inside its task, a trial starts one process per GPU of its node
            plan.hydra_overrides += ["launcher=accelerate", f"launcher.gpus_per_node={ppn}"]
            if run.launcher.gpus_per_node == 0:
                plan.hydra_overrides.append("launcher.cpu=true")
            plan.notes.append(f"each trial: accelerate launch with {ppn} processes on its node")
    if cfg.hydra.sweeper.get("storage"):
        storage = str(cfg.hydra.sweeper.storage)
        plan.storage, plan.study_name = storage, str(cfg.hydra.sweeper.get("study_name"))
        if storage.startswith("sqlite:///"):
            db = Path(storage[len("sqlite:///"):])
            db.parent.mkdir(parents=True, exist_ok=True)  # optuna creates the file, not its folder
            # absolute, so submitit jobs and a later resume find the same study whatever their cwd
            plan.storage = f"sqlite:///{db.resolve()}"
            plan.hydra_overrides.append(f"hydra.sweeper.storage={plan.storage}")
        seed = cfg.hydra.sweeper.get("sampler", {}).get("seed")
        done = _study_size(plan.storage, plan.study_name)
        if seed is not None and done:
            # a resumed study with the same seed would draw the same random start-up points again
            plan.hydra_overrides.append(f"hydra.sweeper.sampler.seed={int(seed) + done}")
            plan.notes.append(f"resuming Optuna study '{plan.study_name}' ({done} trials so far)")
    return plan


# --- one trial (inside Hydra's job: in process, or in a submitit job on a Slurm node) -------------------


def _study_size(storage: str, study_name: str | None) -> int:
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        return 0
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no such study yet
        return 0
