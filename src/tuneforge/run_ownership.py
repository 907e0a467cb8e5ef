"""A run directory belongs to one run: claimed before anything is written, locked for the run's lifetime.

- A new timestamped directory is created atomically (``mkdir`` without ``exist_ok``; a taken name gets a
  ``-<n>`` suffix), so concurrent runs never share one.
- An explicit ``run_dir`` (or a multi-node run's shared one) that already exists is used only when it is empty,
  or when it holds a tuneforge run of the same config: then this run resumes it. Anything else (a directory
  tuneforge did not create, a run of another config, a run that is already complete) is refused before a
  single file is written, so nothing the user owns is deleted or replaced.
- An exclusive ``flock`` on ``<run_dir>/.tuneforge.lock`` (one per node of a multi-node run) is held while
  the run lives; a second writer is refused with the holder's pid and host.
- Resuming clears the previous attempt's bookkeeping: a stale ``FAILED``, a ``summary.json`` of a shorter run
  being extended, and the metrics.jsonl records past the checkpoint it resumes from (they are trained again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from tuneforge.errors import ConfigError, LaunchError
from tuneforge.rundir import (
    atomic_write_text,
    explicit_run_dir,
    is_complete,
    multinode_run_dir,
    new_run_dir,
    redact,
    run_to_dict,
)
from tuneforge.schema.run import RunConfig

LOCK_NAME = ".tuneforge.lock"
# files tuneforge (and Hydra, for a sweep trial) put into a run directory before the run starts
PRE_RUN_FILES = ("trial.json", "trial.log")  # + Hydra's job log of the trial
# keys that may differ between a run directory's config and the run that resumes it: how long to train,
# how often to log/eval/save, where and how the processes start, tracking and eval. Everything else
# (model, data, method, optimizer, seed, ...) is what the checkpoint was trained with.
RESUMABLE_KEYS = ("hparams.max_steps", "hparams.epochs", "hparams.eval_steps", "hparams.save_steps",
                  "hparams.logging_steps", "hparams.save_total_limit", "hparams.dataloader_num_workers",
                  "launcher", "tracking", "eval", "run_dir", "output_root",
                  # a hosted job's client side: how it is followed, not what trains
                  "backend.max_retries", "backend.poll_interval_s", "backend.max_poll_interval_s",
                  "backend.request_timeout_s", "backend.follow", "backend.max_cost_usd", "backend.base_url",
                  "backend.key_file", "backend.api_key_env", "gpu")
LENGTH_KEYS = ("hparams.max_steps", "hparams.epochs")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _allowed(key: str, keys: tuple[str, ...]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in keys)


def config_differences(old: dict[str, Any], new: dict[str, Any], allowed: tuple[str, ...] = RESUMABLE_KEYS) \
        -> list[str]:
    """``key: old -> new`` for every key (outside ``allowed``) whose value differs."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in sorted(set(a) | set(b))
            if not _allowed(k, allowed) and a.get(k) != b.get(k)]


@dataclass
class RunDirLock:
    """An exclusive advisory lock on the run directory (flock: released by the kernel if the process dies)."""

    path: Path
    handle: IO[str] | None = field(default=None, repr=False)

    def acquire(self) -> RunDirLock:
        f = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            try:
                h = json.loads(holder)
                who = f"pid {h.get('pid')} on host {h.get('host')} (since {h.get('since')})"
            except ValueError:
                who = "another process"
            raise LaunchError(f"run directory {self.path.parent} is in use by {who}: one run writes a run "
                              "directory at a time; wait for it, stop it, or choose another run_dir") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        f.flush()
        self.handle = f
        return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


@dataclass
class ClaimedRunDir:
    path: Path
    lock: RunDirLock
    resuming: bool  # the directory held this config's earlier attempt

    def release(self) -> None:
        self.lock.release()


def _lock_name(run: RunConfig) -> str:
    rank = getattr(run.launcher, "node_rank", 0)
    return LOCK_NAME if not rank else f"{LOCK_NAME}.node{rank}"


def _check_existing(d: Path, run: RunConfig) -> bool:
    """Whether ``d`` (which exists) may hold this run: True to resume it, False if it is empty. Else refuse."""
    if not d.is_dir():
        raise ConfigError(f"run_dir={d} exists and is not a directory")
    contents = sorted(p.name for p in d.iterdir() if not p.name.startswith(LOCK_NAME) and p.name not in PRE_RUN_FILES)
    if not contents:
        return False
    if not (d / "config.yaml").is_file():
        shown = ", ".join(contents[:5]) + (", ..." if len(contents) > 5 else "")
        raise ConfigError(f"run_dir={d} is not empty and is not a tuneforge run directory (no config.yaml; it "
                          f"holds: {shown}); tuneforge never writes into a directory it did not create: "
                          "choose a new or empty run_dir")
    try:
        old = yaml.safe_load((d / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"run_dir={d}: its config.yaml cannot be read ({exc}); choose another run_dir") from None
    new = redact(run_to_dict(run))
    diffs = config_differences(old, new)
    if diffs:
        raise ConfigError(f"run_dir={d} holds a run of another config; a run directory resumes only the config "
                          "it was started with. Differences:\n" + "\n".join(f"  - {x}" for x in diffs[:20])
                          + "\n  choose a new run_dir for this config")
    if is_complete(d) and not config_differences(old, new, tuple(k for k in RESUMABLE_KEYS
                                                                 if k not in LENGTH_KEYS)):
        raise ConfigError(f"run_dir={d} already holds this run, complete (summary.json): nothing to resume. "
                          "Raise hparams.max_steps to train it further, or choose a new run_dir")
    return True


def claim_run_dir(run: RunConfig) -> ClaimedRunDir:
    """The run's directory, created or checked, and locked. Raises ConfigError/LaunchError before writing
    anything into a directory this run does not own."""
    explicit = run.run_dir is not None or getattr(run.launcher, "num_nodes", 1) > 1
    if not explicit:
        d = new_run_dir(run)  # atomic: never one another run also got
        return ClaimedRunDir(d, RunDirLock(d / _lock_name(run)).acquire(), resuming=False)
    d = (explicit_run_dir(run) or multinode_run_dir(run)).resolve()
    if d.exists():
        _check_existing(d, run)  # read-only: a foreign directory does not even get a lock file
    else:
        d.mkdir(parents=True, exist_ok=True)
    lock = RunDirLock(d / _lock_name(run)).acquire()
    try:
        resuming = _check_existing(d, run)  # again under the lock: another run may have started meanwhile
    except BaseException:
        lock.release()
        raise
    return ClaimedRunDir(d, lock, resuming=resuming)


def reset_bookkeeping(run_dir: Path, checkpoint: str | None) -> None:
    """Before a resumed attempt: drop the last attempt's end markers and the metrics it will train again."""
    (run_dir / "FAILED").unlink(missing_ok=True)
    (run_dir / "INTERRUPTED").unlink(missing_ok=True)  # stopped by a signal; this attempt resumes it
    (run_dir / "summary.json").unlink(missing_ok=True)  # this run extends a shorter, complete one
    (run_dir / "worker_result.json").unlink(missing_ok=True)  # the last attempt's training result
    metrics = run_dir / "metrics.jsonl"
    start = int(Path(checkpoint).name.rsplit("-", 1)[-1]) if checkpoint else 0
    kept: list[str] = []
    if metrics.is_file():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by the kill
            if int(rec.get("step", 0) or 0) <= start:
                kept.append(json.dumps(rec))
    if checkpoint:
        kept.append(json.dumps({"event": "resume", "step": start, "checkpoint": Path(checkpoint).name,
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    if metrics.is_file() or kept:
        atomic_write_text(metrics, "".join(k + "\n" for k in kept))


_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the filesystem is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}
_DISK_TEXT = (("No space left on device", errno.ENOSPC), ("Read-only file system", errno.EROFS),
              ("Disk quota exceeded", errno.EDQUOT))


def storage_problem(exc: OSError) -> str:
    """What went wrong writing under output_root, in words: a disk problem by name, else the OS's own words."""
    return disk_problem(exc) or (f"{exc.strerror} ({exc.filename})" if exc.strerror and exc.filename
                                 else exc.strerror or str(exc))


def disk_problem(exc: BaseException, where: Path | None = None) -> str | None:
    """'the disk is full' (etc.) when ``exc`` or its cause is a storage error. torch's writer reports only
    "file write failed", without the errno: then the free space under ``where`` decides."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            where = f" ({e.filename})" if e.filename else ""
            return _DISK_ERRNOS[e.errno] + where
        for text, code in _DISK_TEXT:
            if text in str(e):
                return _DISK_ERRNOS[code]
        if where is not None and "file write failed" in str(e):
            import shutil

            with contextlib.suppress(OSError):
                if shutil.disk_usage(where).free < 4 * 1024 * 1024:
                    return f"the disk is full ({where})"
        e = e.__cause__ or e.__context__
    return None
