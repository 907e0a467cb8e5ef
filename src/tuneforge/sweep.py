"""``tuneforge sweep``: hyperparameter sweeps through Hydra's multirun (grid or Optuna), locally or on Slurm.

    tuneforge sweep recipe=lora-tiny sweep=grid 'optim.lr=1e-4,3e-4' 'method.r=8,16'   # 4 trials
    tuneforge sweep recipe=lora-tiny sweep=optuna hydra.sweeper.n_trials=8             # minimizes eval loss
    tuneforge sweep recipe=lora-llama launcher=slurm launcher.gpus_per_node=1 'optim.lr=1e-4,2e-4'
                                                         # each trial one task of a Slurm job array

How it runs: ``sweep=<name>`` selects ``conf/sweep/<name>.yaml`` (sweeper, sweep directory, search space);
every other argument is a Hydra override, ``a,b`` / ``range()`` / ``interval()`` / ``choice()`` sweeps.
Before anything starts, each swept key is composed with its first value (a key that does not exist is
named then, not after N trials). Hydra's sweeper runs :func:`run_trial` once per trial (through
:mod:`tuneforge.hydra_app`); each trial trains into ``<sweep dir>/trial-<n>/`` and records ``trial.json``
(a failure is recorded, returns NaN and the sweep goes on). At the end, however the sweep ended, the
results table (``results.csv``, ``results.md``, sorted by the objective, with the best config as a
ready-to-run command) and ``objective.png`` are written to the sweep directory:
``<output_root>/sweeps/<recipe>/<timestamp>/``.

Optuna studies live in sqlite (``<output_root>/sweeps/<recipe>/optuna.db``, study = the recipe name):
running the same command again resumes the study. ``launcher=slurm`` turns into Hydra's
``submitit_slurm`` launcher (one job-array task per trial, resources from the launcher fields).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import shlex
import sys
import time
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


def run_trial(cfg: Any) -> float:
    """One trial; its log also goes to ``<trial dir>/trial.log`` (a handler removed when the trial ends)."""
    from hydra.core.hydra_config import HydraConfig

    from tuneforge.console import configure_logging, log_to_file

    if not logging.getLogger("tuneforge").hasHandlers():
        configure_logging()  # a submitit trial process starts with none (Hydra's job_logging is none)
    trial_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    with log_to_file(trial_dir / "trial.log"):
        return _run_trial(cfg, trial_dir)


def _run_trial(cfg: Any, trial_dir: Path) -> float:
    from hydra.core.hydra_config import HydraConfig

    from tuneforge.config.compose import to_run_config
    from tuneforge.config.validate import validate
    from tuneforge.rundir import atomic_write_json

    hc = HydraConfig.get()
    overrides = [o for o in hc.overrides.task if not o.lstrip("+").startswith("sweep=")]
    rec: dict[str, Any] = {"num": hc.job.num, "overrides": overrides, "run_dir": str(trial_dir),
                           "status": "running", "started": datetime.now().isoformat(timespec="seconds")}
    slurm_id = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        slurm_id = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    t0 = time.perf_counter()
    objective = math.nan
    try:
        run = to_run_config(cfg)
        validate(run)
        run.run_dir = str(trial_dir)
        if slurm_id:
            from tuneforge.jobs import record_job

            rec["slurm_job_id"] = slurm_id
            record_job(Path(run.output_root), job_id=slurm_id, run_dir=trial_dir, name=run.name,
                       kind="sweep-trial")
        atomic_write_json(trial_dir / TRIAL_FILE, rec)
        from tuneforge.train import train

        summary = train(run, quiet=True)
        tokens, runtime = summary.get("tokens"), summary.get("train_runtime_s")
        rec.update(
            status="completed",
            eval_loss=summary.get("eval_loss"),
            train_loss=summary.get("train_loss"),
            last_loss=summary.get("last_loss"),
            steps=summary.get("steps"),
            tokens_per_s=round(tokens / runtime, 1) if tokens and runtime else None,
            wall_time_s=summary.get("wall_time_s"),
        )
        objective_key = "eval_loss" if rec["eval_loss"] is not None else "last_loss"
        sign = 1.0
        if summary.get("objective_key"):  # the backend names its own (sentence-transformers: val MRR@10)
            objective_key = summary["objective_key"]
            rec[objective_key] = summary.get(objective_key)
            sign = -1.0 if summary.get("objective_higher_is_better") else 1.0  # the sweep minimizes
        elif objective_key != "eval_loss":
            log.warning("trial %s has no eval loss (no validation split): using the last training loss",
                        hc.job.num)
        rec["objective_key"] = objective_key
        value = rec[objective_key]
        objective = sign * float(value) if value is not None else math.nan
        if not math.isfinite(objective):
            rec["status"] = "failed"
            rec["error"] = f"objective ({objective_key}) is {value}"
    except Exception as exc:  # a failed trial is recorded; the sweep goes on
        log.exception("trial %s failed", hc.job.num)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        rec.update(status="failed", error=f"{type(exc).__name__}: {first_line}")
        rec.setdefault("wall_time_s", round(time.perf_counter() - t0, 3))
    rec["objective"] = objective if math.isfinite(objective) else None
    rec["finished"] = datetime.now().isoformat(timespec="seconds")
    atomic_write_json(trial_dir / TRIAL_FILE, rec)
    log.info("trial %s %s: objective %s  (%s)", hc.job.num, rec["status"], rec["objective"],
             " ".join(overrides))
    return objective


# --- results: table, best command, plot ---------------------------------------------------------------


def collect_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    trials = []
    for path in sorted(sweep_dir.glob(f"*/{TRIAL_FILE}")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("status") == "running":  # killed mid-trial (or still running elsewhere)
            rec["status"] = "incomplete"
        trials.append(rec)
    return trials


def _override_map(overrides: list[str]) -> dict[str, str]:
    out = {}
    for o in overrides:
        key, _, value = o.partition("=")
        out[key.lstrip("+~")] = value
    return out


def _as_number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _sort_key(t: dict[str, Any]) -> tuple:
    obj = t.get("objective")
    return (0, obj) if t.get("status") == "completed" and obj is not None else (1, 0.0)


def best_command(trial: dict[str, Any]) -> str:
    args = [o for o in trial["overrides"] if not o.lstrip("+").startswith("sweep=")]
    args.sort(key=lambda o: not o.startswith("recipe="))  # recipe first, the rest as given
    return "tuneforge train " + " ".join(shlex.quote(a) for a in args)


DIGITS = {"tokens_per_s": 0, "wall_time_s": 1}  # losses and the rest: 4


def _fmt(v: Any, column: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, str) and column not in ("status", "run_dir", "error", "overrides"):
        num = _as_number(v)  # a swept value: Optuna's floats at 4 significant digits
        return f"{num:.4g}" if num is not None and "." in v else v
    if isinstance(v, float):
        digits = DIGITS.get(column, 4)
        return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    return str(v)


def write_results(sweep_dir: Path, swept: list[str] | None = None, *, kind: str = "",
                  storage: str | None = None, study_name: str | None = None) -> dict[str, Any]:
    """results.csv, results.md and objective.png for the trials in ``sweep_dir``; returns what it wrote."""
    trials = sorted(collect_trials(sweep_dir), key=_sort_key)
    maps = [_override_map(t.get("overrides", [])) for t in trials]
    if not swept:  # keys whose value differs across trials
        keys = {k for m in maps for k in m}
        swept = sorted(k for k in keys if len({m.get(k) for m in maps}) > 1)
    named = _named_objective(trials)
    metric_cols = [named] if named else ["eval_loss"]
    header = ["rank", "status", *swept, *metric_cols, "train_loss", "tokens_per_s", "wall_time_s", "overrides",
              "run_dir", "error"]
    rows = []
    for i, (t, m) in enumerate(zip(trials, maps, strict=True), 1):
        ok = t.get("status") == "completed"
        rows.append({"rank": i if ok else "", "status": t.get("status"), **{k: m.get(k, "") for k in swept},
                     **{c: t.get(c) for c in metric_cols}, "train_loss": t.get("train_loss"),
                     "tokens_per_s": t.get("tokens_per_s"), "wall_time_s": t.get("wall_time_s"),
                     "overrides": " ".join(m.get(k) and f"{k}={m[k]}" or "" for k in swept).strip()
                     or " ".join(t.get("overrides", [])),
                     "run_dir": t.get("run_dir"), "error": t.get("error", "")})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    from tuneforge.rundir import atomic_write_text

    atomic_write_text(sweep_dir / "results.csv", buf.getvalue())

    done = [t for t in trials if t.get("status") == "completed"]
    best = done[0] if done else None
    md_cols = ["rank", "status", *swept, *metric_cols, "train_loss", "tokens_per_s", "wall_time_s", "run_dir"]
    md = [f"# Sweep results: {sweep_dir}", "",
          f"{len(trials)} trials ({len(done)} completed, {len(trials) - len(done)} failed or incomplete), "
          + ("sorted by the objective (final eval loss, lower is better)" if not named else
             f"sorted by the objective ({named}, higher is better)")
          + (f"; sweeper: {kind}" if kind else ""),
          "", "| " + " | ".join(md_cols) + " |", "|" + "---|" * len(md_cols)]
    for r in rows:
        cells = (_fmt(r.get(c), c) if c != "run_dir" else f"`{r[c]}`" for c in md_cols)
        md.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] != "completed"]
    if failed:
        md += ["", "## Failed trials", ""]
        md += [f"- `{r['overrides']}`: {r['error'] or r['status']}" for r in failed]
    if best:
        best_value = f"{named} {_fmt(best.get(named))}" if named else f"eval loss {_fmt(best.get('objective'))}"
        md += ["", "## Best config", "", f"{best_value} in `{best['run_dir']}`",
               "", "```", best_command(best), "```"]
    study = _study_summary(storage, study_name) if storage else None
    if study:
        md += ["", "## Optuna study", "", study]
    plot_path = plot_objective(sweep_dir / "objective.png", trials, maps, swept)
    if plot_path:
        md += ["", f"![objective vs swept values]({plot_path.name})"]
    atomic_write_text(sweep_dir / "results.md", "\n".join(md) + "\n")
    return {"trials": trials, "best": best, "swept": swept, "csv": sweep_dir / "results.csv",
            "markdown": sweep_dir / "results.md", "plot": plot_path, "rows": rows}


def _named_objective(trials: list[dict[str, Any]]) -> str | None:
    """The objective a backend named (e.g. val_mrr@10), when the trials have one."""
    keys = {t.get("objective_key") for t in trials} - {None, "eval_loss", "last_loss"}
    return next(iter(keys)) if len(keys) == 1 else None


def _study_size(storage: str, study_name: str | None) -> int:
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        return 0
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no such study yet
        return 0


def _study_summary(storage: str, study_name: str | None) -> str | None:
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=study_name, storage=storage)
    except Exception as exc:  # noqa: BLE001  (a study that cannot be read costs the report one line, no more)
        return f"(could not read the study: {exc})"
    states = [t.state.name for t in study.trials]
    text = (f"study `{study_name}` in `{storage}`: {len(states)} trials over all runs of this sweep "
            f"({states.count('COMPLETE')} complete, {states.count('FAIL')} failed); run the same command "
            "again to continue it")
    with contextlib.suppress(ValueError):
        text += f"; best value {study.best_value:.4f} with {study.best_params}"
    return text


def plot_objective(path: Path, trials: list[dict[str, Any]], maps: list[dict[str, str]],
                   swept: list[str]) -> Path | None:
    """One panel per swept key: objective against the key's value (log x for positive numbers spanning a
    decade or more); failed trials are left out of the axes and counted in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(t, m) for t, m in zip(trials, maps, strict=True)
              if t.get("status") == "completed" and t.get("objective") is not None]
    named = _named_objective(trials)
    keys = swept or ["trial"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    best = min(points, key=lambda p: p[0]["objective"]) if points else None
    for ax, key in zip(axes[0], keys, strict=True):
        raw = [m.get(key) if key != "trial" else str(t.get("num")) for t, m in points]
        # a named objective (higher is better) is plotted as the metric itself, not its negation
        ys = [t.get(named, t["objective"]) if named else t["objective"] for t, _ in points]
        nums = [_as_number(v) for v in raw]
        if raw and all(v is not None for v in nums):
            xs: list[Any] = nums
            if all(v > 0 for v in nums) and max(nums) / min(nums) >= 10:
                ax.set_xscale("log")
        else:
            labels = sorted(set(raw), key=str)
            xs = [labels.index(v) for v in raw]
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.scatter(xs, ys, color="tab:blue", zorder=2)
        if best is not None:
            bi = points.index(best)
            ax.scatter([xs[bi]], [ys[bi]], marker="*", s=220, color="tab:orange", zorder=3, label="best")
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(named or "eval loss")
        ax.grid(True, alpha=0.3)
    n_failed = len(trials) - len(points)
    title = f"final {named or 'eval loss'} of {len(points)} trials"
    title += f" ({n_failed} failed, not shown)" if n_failed else ""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_table(rows: list[dict[str, Any]], swept: list[str]) -> str:
    metric = next((k for k in (rows[0] if rows else {}) if k.startswith("val_")), "eval_loss")
    cols = ["rank", "status", *swept, metric, "train_loss", "tokens_per_s", "wall_time_s"]
    table = [cols] + [[_fmt(r.get(c), c) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table)


# --- the command ---------------------------------------------------------------------------------------


def run_hydra_multirun(overrides: list[str]) -> int:
    """Hand the command line to the @hydra.main app with --multirun; Hydra's exit status back."""
    from tuneforge import hydra_app

    argv = sys.argv
    sys.argv = ["tuneforge-sweep", "--multirun", *overrides]
    try:
        hydra_app.trial()
        return 0
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = argv


class _SacctUnavailable(logging.Filter):
    """Without Slurm accounting, submitit warns on every status poll that sacct failed, then goes on to read
    each trial's result file; one note up front says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


def cmd_sweep(args: list[str]) -> int:
    plan = plan_sweep(args)
    if any(o == "hydra/launcher=submitit_slurm" for o in plan.hydra_overrides):
        logging.getLogger("submitit").addFilter(_SacctUnavailable())
    print(f"sweep ({plan.kind}) over {', '.join(plan.swept) or 'nothing (one trial)'} -> {plan.sweep_dir}",
          flush=True)
    for note in plan.notes:
        print(f"  {note}", flush=True)
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    status = 1
    try:
        status = run_hydra_multirun(plan.hydra_overrides)
    finally:
        res = write_results(plan.sweep_dir, plan.swept, kind=plan.kind, storage=plan.storage,
                            study_name=plan.study_name)
        print()
        print(format_table(res["rows"], res["swept"]) if res["rows"] else "no trial finished")
        print(f"\nresults  {res['csv']}\n         {res['markdown']}")
        if res["plot"]:
            print(f"plot     {res['plot']}")
        if res["best"]:
            key = res["best"].get("objective_key") or ""
            label, value = (key, res["best"].get(key)) if key.startswith("val_") else ("eval loss",
                                                                                      res["best"]["objective"])
            print(f"best     {label} {_fmt(value)}: {best_command(res['best'])}")
    if status != 0:
        print(f"tuneforge: the sweep stopped early (Hydra exit status {status}); the table lists what ended",
              file=sys.stderr)
        return status
    return 0 if res["best"] else 1
