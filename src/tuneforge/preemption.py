"""Checkpoint on Slurm's preemption signal, so the requeued job resumes where this one stopped.

The Slurm launcher's job asks for ``--signal=USR1@<seconds>`` before its time limit and sets
``TUNEFORGE_PREEMPTION=1``. Every training process then installs this callback:

- on SIGUSR1 (time limit near; only under ``TUNEFORGE_PREEMPTION=1``) or SIGTERM/SIGINT/SIGHUP (preempted,
  cancelled, ``kill``, a container stop, Ctrl-C; on every run), a flag is set; signal handlers only
  set flags, the work happens between optimizer steps;
- at the next step end the ranks agree (one all-reduce of the flag, so all of them stop at the same
  step), the Trainer saves a full checkpoint (model, optimizer, scheduler, RNG, trainer_state.json last)
  and stops;
- after the save, rank 0 writes ``PREEMPTED`` (step + checkpoint) for SIGUSR1, ``INTERRUPTED`` for the
  others, and every rank exits with ``PREEMPTED_EXIT_CODE``; the batch script sees ``PREEMPTED`` and runs
  ``scontrol requeue``. SIGTERM only checkpoints: Slurm requeues a preempted job itself, and a cancelled job
  should stay cancelled. ``tuneforge runs`` lists such a run as interrupted; the same command resumes it.

On the requeued run the native backend resumes from :func:`latest_complete_checkpoint`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tuneforge.callbacks import CallbackBase

ENV_FLAG = "TUNEFORGE_PREEMPTION"
MARKER = "PREEMPTED"  # a requeue is wanted (Slurm's time-limit signal)
INTERRUPTED = "INTERRUPTED"  # stopped by a signal (SIGTERM, SIGINT, SIGHUP): resumable with the same command
PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: try again later
# signal -> requeue after the checkpoint. SIGTERM (kill, systemd, a container stop, Slurm's preemption) and
# SIGINT/SIGHUP (Ctrl-C, a closed terminal) checkpoint everywhere; SIGUSR1 only under a launcher that asked.
STOP_SIGNALS = {signal.SIGTERM: False, signal.SIGINT: False, signal.SIGHUP: False}
SIGNALS = {signal.SIGUSR1: True, **STOP_SIGNALS}
# a terminal's signals: when this process starts with one ignored (nohup, `cmd &` in a script), it stays ignored.
# SIGUSR1 and SIGTERM are always taken: the Slurm job script ignores SIGUSR1 on purpose, so that accelerate and
# torchrun survive it and the trainer, installing its own handler, checkpoints.
CALLER_MAY_IGNORE = (signal.SIGINT, signal.SIGHUP)

_installed: dict[int, Any] = {}  # the handlers this process had before a training installed its own


def enabled() -> bool:
    return os.environ.get(ENV_FLAG, "0") not in ("", "0", "false")


def restore_signal_handlers() -> None:
    """Put back the handlers a training replaced (called when training ends, however it ends)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    while _installed:
        sig, old = _installed.popitem()
        signal.signal(sig, old)


def latest_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint that is whole: its trainer_state.json parses, its safetensors files are as long
    as their headers say, and its seal (when tuneforge wrote one) matches. See :mod:`tuneforge.checkpoints`."""
    from tuneforge.checkpoints import latest_complete_checkpoint as verified

    return verified(ckpt_dir)


class PreemptionCallback(CallbackBase):
    """TrainerCallback (duck-typed, like MetricsCallback): save and stop at the step after a signal.

    A second SIGINT (Ctrl-C pressed again) stops at once, without the checkpoint. SIGINT or SIGHUP ignored when
    training starts stays ignored: ``nohup tuneforge train …`` survives the closed terminal, and a run
    started with ``&`` from a script ignores the Ctrl-C meant for the script, as the hosted-job follower does."""

    def __init__(self, run_dir: Path, signals: tuple[signal.Signals, ...] | None = None):
        import threading

        self.run_dir = run_dir
        self.received: signal.Signals | None = None
        self.stopping = False
        self.signals = signals if signals is not None else tuple(SIGNALS if enabled() else STOP_SIGNALS)
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in self.signals:
                if sig in CALLER_MAY_IGNORE and signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # the caller ignores it (nohup's SIGHUP, a background job's SIGINT): so do we
                old = signal.signal(sig, self._on_signal)
                _installed.setdefault(sig, old)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
            print(f"tuneforge: got {self.received.name}: checkpointing at the end of this step"
                  + (" (Ctrl-C again stops without it)" if signum == signal.SIGINT else ""),
                  file=sys.stderr, flush=True)
        elif signum == signal.SIGINT:
            restore_signal_handlers()
            raise KeyboardInterrupt

    def _any_rank_signalled(self, args: Any) -> bool:
        import torch
        import torch.distributed as dist

        local = self.received is not None
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not self.stopping and self._any_rank_signalled(args):
            self.stopping = True
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not self.stopping:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's share of the checkpoint (RNG states) is on disk
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        requeue = SIGNALS.get(self.received, True) if self.received else True
        if state.is_world_process_zero:
            from tuneforge.rundir import atomic_write_json

            atomic_write_json(self.run_dir / (MARKER if requeue else INTERRUPTED), {
                "step": state.global_step, "checkpoint": str(ckpt),
                "signal": self.received.name if self.received else "peer",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "job_id": os.environ.get("SLURM_JOB_ID")})
        why = self.received.name if self.received else "another rank's signal"
        print(f"tuneforge: checkpoint {ckpt.name} saved after {why}; stopping"
              + (" (requeue)" if requeue else ""), file=sys.stderr, flush=True)
        restore_signal_handlers()
        raise SystemExit(PREEMPTED_EXIT_CODE)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        restore_signal_handlers()


def preemption_callbacks(run_dir: Path) -> list[Any]:
    """The callback every trainer installs: SIGTERM/SIGINT/SIGHUP checkpoint and stop everywhere; Slurm's
    SIGUSR1 (requeue) too under a launcher that asked for it (``TUNEFORGE_PREEMPTION=1``)."""
    return [PreemptionCallback(run_dir)]
