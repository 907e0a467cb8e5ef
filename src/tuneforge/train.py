"""``train(run) -> summary``: the pure function every entry point (CLI, Hydra multirun, tests) calls."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

from tuneforge.backends.registry import get_backend
from tuneforge.errors import LaunchError
from tuneforge.finish import finish_run, format_summary
from tuneforge.launch.registry import get_launcher
from tuneforge.plan import write_run_plan
from tuneforge.run_ownership import claim_run_dir, disk_problem, reset_bookkeeping, storage_problem
from tuneforge.rundir import write_config
from tuneforge.schema.components import Backend, HostedBackend, Launcher
from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)


def _summary_from_metrics(run_dir: Path) -> dict[str, Any]:
    """Summary fields from metrics.jsonl, for backends that trained in another process."""
    worker = run_dir / "worker_result.json"
    if worker.is_file():  # the training process's own result (rank 0 of the worker / axolotl's plugin)
        return json.loads(worker.read_text())
    path = run_dir / "metrics.jsonl"
    recs = [json.loads(line) for line in path.open()] if path.exists() else []
    losses = [r for r in recs if "loss" in r]
    evals = [r for r in recs if "eval_loss" in r]
    ends = [r for r in recs if "train_loss" in r]
    return {
        "first_loss": losses[0]["loss"] if losses else None,
        "last_loss": losses[-1]["loss"] if losses else None,
        "train_loss": ends[-1]["train_loss"] if ends else None,
        "train_runtime_s": ends[-1].get("train_runtime") if ends else None,
        "eval_loss": evals[-1]["eval_loss"] if evals else None,
        "steps": max((r.get("step", 0) for r in recs), default=0),
        "tokens": max((r.get("tokens", 0) or 0 for r in recs), default=0),
    }


def train(run: RunConfig, *, quiet: bool = False, yes: bool = False) -> dict[str, Any]:
    """Create the run directory, launch the backend through the launcher, write summary.json last.

    ``yes``: a hosted backend starts a job estimated above ``backend.max_cost_usd`` without asking."""
    backend = get_backend(run.backend.name)
    launcher = get_launcher(run.launcher.name)
    if backend.hosted:  # format rules, tokens, cost (and the question) before a run directory exists
        cast(HostedBackend, backend).preflight(run, yes=yes)
    elif launcher.runs_here:  # a batch job may see models this host cannot
        from tuneforge.data.prepare import prepare_splits
        from tuneforge.models import check_model_reachable

        check_model_reachable(run)
        data = prepare_splits(run.dataset)  # a dataset error is refused before any run directory exists
        _check_answers_fit(run, backend, data.dir, {"train": data.train,
                                                    **({"validation": data.val} if data.sizes.get("val") else {})})
    try:
        claim = claim_run_dir(run)
    except OSError as exc:  # read-only, full, a file where a directory belongs: one line, not a traceback
        raise LaunchError(f"cannot create the run directory under output_root={run.output_root}: "
                          f"{storage_problem(exc)}") from None
    try:
        return _train_in(run, claim.path, claim.resuming, backend, launcher, quiet)
    finally:
        from tuneforge.preemption import restore_signal_handlers

        restore_signal_handlers()
        claim.release()


def _check_answers_fit(run: RunConfig, backend: Backend, data_dir: Path | None, splits: dict[str, Path]) -> None:
    """hparams.seq_len too short to keep any answer token of an example is refused here, before a run directory
    exists (the trainer would find it only after launch, and leave a FAILED run behind). A pass is remembered
    next to the prepared data, per tokenizer, template and seq_len (tokenizing every example takes seconds)."""
    from tuneforge.schema.components import CONVERSATION_FORMATS

    if (backend.task != "causal-lm" or backend.loss_mask(run) != "assistant-only" or run.objective.is_preference
            or run.dataset.format not in CONVERSATION_FORMATS):
        return
    import hashlib

    from tuneforge.data.masking import unanswered_within
    from tuneforge.data.prepare import tokenizer_id
    from tuneforge.errors import DataError
    from tuneforge.models import load_tokenizer
    from tuneforge.rundir import atomic_write_text

    key = hashlib.sha256(f"{tokenizer_id(run)}|{run.hparams.seq_len}|{sorted(splits)}".encode()).hexdigest()[:12]
    passed = data_dir / f"answers-fit-{key}.ok" if data_dir is not None else None
    if passed is not None and passed.is_file():
        return
    if bad := unanswered_within(load_tokenizer(run), splits, run.hparams.seq_len):
        raise DataError(f"{', '.join(bad)}: an example has no assistant token left within hparams.seq_len="
                        f"{run.hparams.seq_len}; raise hparams.seq_len or shorten the prompts (refused before a run "
                        "directory was made)")
    if passed is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs the check next time
            atomic_write_text(passed, f"seq_len {run.hparams.seq_len}: every example keeps an answer token\n")


def _interrupted(exc: BaseException, run_dir: Path) -> bool:
    """A signal stopped the run (SIGTERM/SIGINT/SIGHUP: the trainer checkpointed and left INTERRUPTED; a second
    Ctrl-C: KeyboardInterrupt): it is resumable, not FAILED. Records it and says how to resume."""
    from tuneforge.preemption import INTERRUPTED, MARKER, PREEMPTED_EXIT_CODE, latest_complete_checkpoint
    from tuneforge.rundir import atomic_write_json

    if not (isinstance(exc, KeyboardInterrupt) or isinstance(exc, SystemExit) and exc.code == PREEMPTED_EXIT_CODE):
        return False
    marker = run_dir / INTERRUPTED
    if not marker.is_file() and not (run_dir / MARKER).is_file():
        with contextlib.suppress(OSError):
            atomic_write_json(marker, {"signal": "SIGINT" if isinstance(exc, KeyboardInterrupt) else "?",
                                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    last = latest_complete_checkpoint(run_dir / "checkpoints")
    print(f"tuneforge: run {run_dir} interrupted; "
          + (f"{Path(last).name} is its last complete checkpoint" if last else "no checkpoint was written yet")
          + f".\n  resume: tuneforge train <same arguments> run_dir={run_dir}", file=sys.stderr, flush=True)
    return True


def _train_in(run: RunConfig, run_dir: Path, resuming: bool, backend: Backend, launcher: Launcher,
              quiet: bool) -> dict[str, Any]:
    from tuneforge.preemption import latest_complete_checkpoint

    if resuming:  # the final save replaces adapter/ or model/: refuse now, not after training, if not ours
        from tuneforge.rundir import replace_problem

        for name in ("adapter", "model"):
            if why := replace_problem(run_dir / name):
                raise LaunchError(f"run {run_dir} cannot resume: {why}; its final save would replace it. "
                                  "Move it elsewhere and run again")
    ckpt = latest_complete_checkpoint(run_dir / "checkpoints") if resuming else None
    if resuming and getattr(run.launcher, "node_rank", 0) == 0:  # node 0 owns the directory's bookkeeping
        reset_bookkeeping(run_dir, ckpt)
    state = f"resuming from {Path(ckpt).name}" if ckpt else "restarting: no complete checkpoint" if resuming else "new"
    print(f"tuneforge: run directory {run_dir} ({state})", file=sys.stderr, flush=True)
    running = run_dir / "RUNNING"
    t0 = time.perf_counter()
    try:
        write_config(run, run_dir)
        running.write_text(f"pid {os.getpid()}\n")
        backend.prepare(run, run_dir)
        write_run_plan(run, run_dir)  # plan.txt + memory_estimate.json: what this run executes
        result = launcher.launch(run, run_dir, backend) or _summary_from_metrics(run_dir)
    except BaseException as exc:
        running.unlink(missing_ok=True)
        if _interrupted(exc, run_dir):
            raise
        why = disk_problem(exc, run_dir)
        with contextlib.suppress(OSError):  # on a full disk even this may fail; RUNNING is gone either way
            (run_dir / "FAILED").write_text(f"{type(exc).__name__}: {why or exc}\n")
        if why is not None:
            last = latest_complete_checkpoint(run_dir / "checkpoints")
            raise LaunchError(f"run {run_dir} stopped: {why}. "
                              + (f"The last complete checkpoint, {Path(last).name}, is kept: free space and run "
                                 "the same command to resume from it." if last else
                                 "No complete checkpoint was written.")) from None
        raise
    if result.get("submitted"):  # a batch job (slurm, ray) finishes its run directory itself, via finish_run
        if not quiet and "name" in result:  # launcher.wait=true: the job's own summary
            print(format_summary(result), flush=True)
        return result
    return finish_run(run, run_dir, result, time.perf_counter() - t0, quiet=quiet,
                      **({"resumed_from": Path(ckpt).name} if ckpt else {}))
