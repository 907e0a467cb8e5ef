"""The one way a run ends, whichever executor ran it (in this process, a Slurm batch job, a Ray job).

``finish_run`` writes summary.json last (its presence means the run completed), prints the summary, runs
``eval.after_training`` and closes the run's trackers. ``train()`` calls it for runs that train here; a batch
job calls it on the job's side when its workers are done, so a setting such as ``eval.after_training`` cannot
be honoured by one executor and silently dropped by another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.rundir import write_summary
from tuneforge.schema.run import RunConfig


def finish_run(run: RunConfig, run_dir: Path, result: dict[str, Any], wall_time_s: float, *,
               quiet: bool = False, **extra: Any) -> dict[str, Any]:
    """summary.json (atomically, last) -> the printed summary -> eval.after_training -> trackers closed."""
    from tuneforge.tracking.trackers import close_trackers

    summary = write_summary(run, run_dir, result, wall_time_s, **extra)
    if not quiet:
        print(format_summary(summary), flush=True)
    try:
        if run.eval.after_training:  # eval.json + report.md/html next to the weights
            from tuneforge.evaluation.runner import evaluate_run

            evaluate_run(run_dir)
    finally:
        close_trackers(run_dir)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    def f(v: Any, fmt: str = "{:.4f}") -> str:
        return fmt.format(v) if isinstance(v, (int, float)) else "-"

    tok_s = s["tokens"] / s["train_runtime_s"] if s.get("train_runtime_s") and s.get("tokens") else None
    lines = [
        "",
        f"tuneforge run complete: {s['name']}  ({s['method']} on {s['model']}, backend={s['backend']}, "
        f"launcher={s['launcher']})",
        f"  loss        first {f(s.get('first_loss'))}  ->  last {f(s.get('last_loss'))}"
        f"   (mean {f(s.get('train_loss'))})",
        f"  eval loss   {f(s.get('eval_loss'))}",
        f"  steps       {s.get('steps')}   tokens {s.get('tokens')}   tokens/s {f(tok_s, '{:.0f}')}",
        f"  wall time   {f(s.get('wall_time_s'), '{:.1f}')} s",
        f"  run dir     {s['run_dir']}",
        f"  weights     {s['run_dir']}/{s.get('weights', 'adapter')}" if not s.get("fine_tuned_model") else
        f"  model       {s['fine_tuned_model']}  (hosted; job {s.get('job_id')}, {s.get('trained_tokens')} trained "
        "tokens)",
    ]
    return "\n".join(lines)
