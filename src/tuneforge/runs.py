"""Local runs by name: ``tuneforge runs`` lists them; ``run=latest`` / ``run=<recipe>`` picks one.

    tuneforge runs [recipe=NAME] [output_root=DIR] [n=20]
    tuneforge runs compare RUN RUN [...] [--out DIR]      config diff + metrics, Markdown (printed) and HTML

A run's status comes from its directory alone (the run-directory contract of :mod:`tuneforge.rundir`):
complete (summary.json, no RUNNING), running (RUNNING and its pid alive on this host), killed (RUNNING, pid
gone), failed (FAILED), interrupted (INTERRUPTED: a signal stopped it; resumable), damaged (a summary.json
that does not parse as a run's summary: never listed complete).
RUN is a directory, ``latest`` (the newest complete run) or a recipe name (its
newest complete run).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import ConfigError, RunArtifactError
from tuneforge.strategies.registry import STRATEGIES

DEFAULT_ROOT = "outputs"


@dataclass
class RunInfo:
    path: Path
    name: str
    status: str
    backend: str = "?"
    method: str = "?"
    model: str = "?"
    summary: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    objective: str = "sft"
    parent: str | None = None  # init.run: the run this one started from

    @property
    def has_weights(self) -> bool:
        return (self.path / "adapter").is_dir() or (self.path / "model").is_dir()

    def metric(self, key: str) -> Any:
        return (self.summary or {}).get(key)

    def eval_headline(self) -> str:
        if not self.eval:
            return "-"
        b, f = self.eval.get("base", {}), self.eval.get("finetuned", {})
        parts = []
        if "loss" in f:
            parts.append(f"loss {b.get('loss', float('nan')):.3f}->{f['loss']:.3f}")
        if "chrf" in f:
            parts.append(f"chrF {b.get('chrf', float('nan')):.1f}->{f['chrf']:.1f}")
        if self.eval.get("reward_accuracy") is not None:
            parts.append(f"reward acc {self.eval['reward_accuracy']:.0f}%")
        return ", ".join(parts) or "-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(run_dir: Path) -> str:
    running = run_dir / "RUNNING"
    if (run_dir / "FAILED").exists():
        return "failed"
    if (run_dir / "INTERRUPTED").exists() and not running.exists():
        return "interrupted"  # a signal stopped it after a checkpoint: the same command resumes it
    if running.exists():
        words = running.read_text(errors="replace").split()
        pid = next((int(w) for w in words if w.isdigit()), None)
        return "running" if pid is None or _pid_alive(pid) else "killed"
    if (run_dir / "summary.json").is_file():
        from tuneforge.rundir import summary_problem

        return "damaged" if summary_problem(run_dir) else "complete"
    return "killed"  # neither finished nor marked running: the process died before it could say


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_info(run_dir: Path) -> RunInfo:
    cfg: dict[str, Any] = {}
    with contextlib.suppress(OSError, yaml.YAMLError):
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    return RunInfo(run_dir, str(cfg.get("name") or run_dir.parent.name), run_status(run_dir),
                   backend=str((cfg.get("backend") or {}).get("name", "?")),
                   method=str((cfg.get("method") or {}).get("name", "?")),
                   model=str((cfg.get("model") or {}).get("name_or_path", "?")),
                   summary=_read_json(run_dir / "summary.json"), eval=_read_json(run_dir / "eval.json"),
                   objective=str((cfg.get("objective") or {}).get("name", "sft")),
                   parent=(cfg.get("init") or {}).get("run"))


def lineage(run: RunInfo, limit: int = 8) -> list[str]:
    """The chain of runs ``run`` started from, nearest first (``init.run``, its own ``init.run``, ...)."""
    chain: list[str] = []
    parent = run.parent
    while parent and len(chain) < limit:
        info = run_info(Path(parent))
        chain.append(f"{info.name}/{Path(parent).name} ({info.objective})")
        parent = info.parent
    return chain


def find_runs(root: Path | str = DEFAULT_ROOT, recipe: str | None = None) -> list[RunInfo]:
    """Run directories under ``root`` (``<root>/<recipe>/<run>/config.yaml``), newest first."""
    root = Path(root)
    dirs = [p.parent for p in root.glob("*/*/config.yaml") if p.parent.parent.name != "plan"
            and p.parent.name != "plan"]
    if recipe:
        dirs = [d for d in dirs if d.parent.name == recipe]
    dirs.sort(key=lambda d: ((d / "config.yaml").stat().st_mtime, d.name), reverse=True)
    return [run_info(d) for d in dirs]


def recent_runs_hint(root: Path | str = DEFAULT_ROOT, n: int = 5) -> str:
    runs = find_runs(root)[:n]
    if not runs:
        return f"  no runs under {root}/ yet: `make train` makes one"
    lines = [f"  recent runs under {root}/ (run=latest is the newest complete one):"]
    lines += [f"    {r.path}  [{r.status}]" for r in runs]
    return "\n".join(lines)


def resolve_run(value: str, root: Path | str = DEFAULT_ROOT) -> Path:
    """A run directory from ``run=``: a path, ``latest``, or a recipe name (its newest complete run)."""
    if not value:
        raise RunArtifactError(f"run=<run_dir> is required (or run=latest, run=<recipe>)\n{recent_runs_hint(root)}")
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    if value == "latest" or "/" not in value:
        runs = [r for r in find_runs(root, None if value == "latest" else value) if r.status == "complete"]
        if runs:
            return runs[0].path
        what = "complete run" if value == "latest" else f"complete run of recipe {value!r}"
        raise RunArtifactError(f"run={value}: no {what} under {root}/\n{recent_runs_hint(root)}")
    raise RunArtifactError(f"run={value}: no such directory\n{recent_runs_hint(root)}")


# --- listing and comparison -------------------------------------------------------------------------------


def _fmt(v: Any, spec: str = "{:.4f}") -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return spec.format(v)
    return str(v)


def runs_table(runs: list[RunInfo]) -> str:
    head = f"{'run':<44} {'status':<9} {'recipe':<13} {'backend':<8} {'loss first->last':<18} {'eval':<8} headline"
    lines = [head, "-" * len(head)]
    for r in runs:
        s = r.summary or {}
        loss = (f"{_fmt(s.get('first_loss'), '{:.3f}')}->{_fmt(s.get('last_loss'), '{:.3f}')}"
                if s else "-")
        rel = str(r.path)
        rel = rel if len(rel) <= 44 else "…" + rel[-43:]
        lines.append(f"{rel:<44} {r.status:<9} {r.name[:13]:<13} {r.backend:<8} {loss:<18} "
                     f"{_fmt(s.get('eval_loss'), '{:.3f}'):<8} {r.eval_headline()}")
        if r.parent:  # a run started from another (init.run): the chain back to the base
            lines.append(f"  {r.objective} <- " + " <- ".join(lineage(r)))
    return "\n".join(lines)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


METRIC_ROWS = [("first_loss", "first loss"), ("last_loss", "last loss"), ("train_loss", "mean train loss"),
               ("eval_loss", "eval loss"), ("steps", "steps"), ("tokens", "tokens"),
               ("wall_time_s", "wall time (s)")]


def compare(runs: list[RunInfo]) -> dict[str, Any]:
    """Config keys whose values differ, and the metrics side by side."""
    flat = []
    for r in runs:
        try:
            flat.append(_flatten(yaml.safe_load((r.path / "config.yaml").read_text(encoding="utf-8")) or {}))
        except (OSError, yaml.YAMLError):
            flat.append({})
    keys = sorted(set().union(*flat))
    diff = {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1
            and k not in ("run_dir",)}
    metrics = {label: [r.metric(k) for r in runs] for k, label in METRIC_ROWS}
    for key, label in (("loss", "eval: test loss"), ("chrf", "eval: chrF"), ("rouge_l", "eval: ROUGE-L"),
                       ("exact_match", "eval: exact match %")):
        values = [(r.eval or {}).get("finetuned", {}).get(key) for r in runs]
        if any(v is not None for v in values):
            metrics[label] = values
    return {"runs": [str(r.path) for r in runs], "status": [r.status for r in runs], "config_diff": diff,
            "metrics": metrics}


def compare_markdown(c: dict[str, Any]) -> str:
    n = len(c["runs"])
    head = "| | " + " | ".join(f"run {i + 1}" for i in range(n)) + " |"
    sep = "|---|" + "---|" * n
    out = ["# tuneforge run comparison", ""]
    out += [f"- run {i + 1}: `{p}` ({s})" for i, (p, s) in enumerate(zip(c["runs"], c["status"], strict=True))]
    out += ["", "## metrics", "", head, sep]
    out += [f"| {k} | " + " | ".join(_fmt(v) for v in vals) + " |" for k, vals in c["metrics"].items()]
    out += ["", "## config differences", ""]
    if c["config_diff"]:
        out += [head.replace("| |", "| key |", 1), sep]
        out += [f"| `{k}` | " + " | ".join(f"`{_fmt(v)}`" for v in vals) + " |" for k, vals in c["config_diff"].items()]
    else:
        out.append("(identical configs)")
    return "\n".join(out) + "\n"


def compare_html(c: dict[str, Any]) -> str:
    def row(cells: list[str], tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(x)}</{tag}>" for x in cells) + "</tr>"

    n = len(c["runs"])
    head = row(["", *(f"run {i + 1}" for i in range(n))], "th")
    runs = "".join(f"<li>run {i + 1}: <code>{html.escape(p)}</code> ({html.escape(s)})</li>"
                   for i, (p, s) in enumerate(zip(c["runs"], c["status"], strict=True)))
    metrics = "".join(row([k, *(_fmt(v) for v in vals)]) for k, vals in c["metrics"].items())
    diff = "".join(row([k, *(_fmt(v) for v in vals)]) for k, vals in c["config_diff"].items())
    style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>tuneforge run comparison</title>"
            f"<style>{style}</style></head><body><h1>tuneforge run comparison</h1><ul>{runs}</ul>"
            f"<h2>metrics</h2><table>{head}{metrics}</table><h2>config differences</h2>"
            + (f"<table>{head}{diff}</table>" if diff else "<p>(identical configs)</p>") + "</body></html>\n")


def cmd_runs(args: list[str]) -> int:
    opts: dict[str, str] = {}
    positional: list[str] = []
    out: Path | None = None
    it = iter(args)
    for a in it:
        if a == "--out" or a.startswith("--out="):
            value = a.split("=", 1)[1] if "=" in a else next(it, "")
            if not value:
                raise ConfigError("runs compare --out needs a directory")
            out = Path(value)
        elif "=" in a:
            k, _, v = a.partition("=")
            if k not in ("recipe", "output_root", "n"):
                raise ConfigError(f"tuneforge runs: unknown key '{k}'; valid keys: recipe, output_root, n")
            opts[k] = v
        else:
            positional.append(a)
    root = Path(opts.get("output_root", DEFAULT_ROOT))
    if positional and positional[0] == "compare":
        names = positional[1:]
        if len(names) < 2:
            raise ConfigError("tuneforge runs compare RUN RUN [...]: two or more runs (directories, latest or "
                              "recipe names)")
        runs = [run_info(resolve_run(n, root)) for n in names]
        c = compare(runs)
        md = compare_markdown(c)
        out = out or root / "compare"
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(md, encoding="utf-8")
        (out / "compare.html").write_text(compare_html(c), encoding="utf-8")
        print(md, end="")
        print(f"\nwritten: {out / 'compare.md'}, {out / 'compare.html'}")
        return 0
    if positional:
        raise ConfigError(f"tuneforge runs: unexpected {positional[0]!r}; usage: tuneforge runs [recipe=NAME] "
                          "[output_root=DIR] | tuneforge runs compare RUN RUN [...]")
    try:
        limit = int(opts.get("n", "20"))
    except ValueError:
        raise ConfigError(f"n={opts['n']!r} is not a number") from None
    runs = find_runs(root, opts.get("recipe"))
    if not runs:
        print(f"no runs under {root}/" + (f" for recipe {opts['recipe']}" if "recipe" in opts else "")
              + "; `make train` makes one")
        return 0
    print(runs_table(runs[:limit]))
    if len(runs) > limit:
        print(f"... {len(runs) - limit} older (n={len(runs)} shows all)")
    print("\ncompare: tuneforge runs compare latest <run> ...   eval: make eval run=latest")
    return 0


def next_steps(summary: dict[str, Any]) -> str:
    """What to run after a training run (printed by ``tuneforge train``)."""
    d = summary.get("run_dir", "")
    lines = ["", "next:", f"  make eval run={d}   # base vs fine-tuned on the test split", f"  make chat run={d}"]
    if summary.get("adapter", summary.get("method") in STRATEGIES and STRATEGIES[summary["method"]].uses_adapter):
        lines.append(f"  make merge run={d}")
    lines.append("  tuneforge runs   # this run among the others; run=latest names the newest")
    return "\n".join(lines)
