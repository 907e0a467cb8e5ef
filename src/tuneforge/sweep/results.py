"""After a sweep: collect trial.json files; write results.csv/.md (sorted, best config as a command), objective.png."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import shlex
from pathlib import Path
from typing import Any

from tuneforge.sweep.preflight import TRIAL_FILE

log = logging.getLogger(__name__)


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


def fmt_value(v: Any, column: str = "") -> str:
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
        cells = (fmt_value(r.get(c), c) if c != "run_dir" else f"`{r[c]}`" for c in md_cols)
        md.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] != "completed"]
    if failed:
        md += ["", "## Failed trials", ""]
        md += [f"- `{r['overrides']}`: {r['error'] or r['status']}" for r in failed]
    if best:
        best_value = (f"{named} {fmt_value(best.get(named))}" if named
                      else f"eval loss {fmt_value(best.get('objective'))}")
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
    table = [cols] + [[fmt_value(r.get(c), c) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table)


# --- the command ---------------------------------------------------------------------------------------
