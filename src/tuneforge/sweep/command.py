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

import logging
import sys

from tuneforge.sweep.preflight import plan_sweep
from tuneforge.sweep.results import best_command, fmt_value, format_table, write_results

log = logging.getLogger(__name__)


def run_hydra_multirun(overrides: list[str]) -> int:
    """Hand the command line to the @hydra.main app with --multirun; Hydra's exit status back."""
    from tuneforge.sweep import hydra_app

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
            print(f"best     {label} {fmt_value(value)}: {best_command(res['best'])}")
    if status != 0:
        print(f"tuneforge: the sweep stopped early (Hydra exit status {status}); the table lists what ended",
              file=sys.stderr)
        return status
    return 0 if res["best"] else 1
