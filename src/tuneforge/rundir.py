"""The run directory: ``outputs/<recipe>/<timestamp>/``.

Layout (the same for every backend, so eval/merge/chat need not know which one trained):

    config.yaml      resolved RunConfig, secrets redacted (the worker re-reads exactly this)
    RUNNING          present while training; a killed run keeps it and never gets summary.json
    metrics.jsonl    one JSON object per logging step (step, loss, lr, tokens_per_s, elapsed_s, ...)
    checkpoints/     trainer checkpoints (resumable)
    adapter/ | model/  final weights, HF save_pretrained (safetensors) + tokenizer, moved in atomically
    summary.json     written last, atomically: its presence means the run completed
    FAILED           why the run failed (a batch job, or a refused resume); PREEMPTED: a preempted job's marker
    worker_result.json  rank 0's result in a multi-process run, turned into summary.json by the job side

This module owns those names: every other module uses the constants below, never the literals.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tuneforge.paths import project_root
from tuneforge.schema.run import RunConfig
from tuneforge.secrets import REDACTED, SECRET_ENV, is_safe_env, is_secret_key  # noqa: F401  (re-exported)
from tuneforge.secrets import secret_values as _secret_values

# the run directory's state files
RUNNING = "RUNNING"
FAILED = "FAILED"
PREEMPTED = "PREEMPTED"
SUMMARY = "summary.json"
WORKER_RESULT = "worker_result.json"


def secret_values() -> list[str]:
    return _secret_values()


def redact(obj: Any, extra: Any = None) -> Any:
    """Replace values of secret-named keys, every launcher.env value not on the safe list, and any literal
    secret from the environment, from ``obj`` itself or from ``extra`` (a config mapping or a list of values:
    the run's own secrets, for a text such as a plan file), everywhere."""
    from tuneforge.secrets import secrets_in

    known = [*secrets_in(obj), *(secrets_in(extra) if isinstance(extra, dict) else list(extra or []))]
    secrets = sorted(set(_secret_values()) | set(known), key=len, reverse=True)

    def walk(o: Any, path: tuple[str, ...] = ()) -> Any:
        key = path[-1] if path else ""
        if isinstance(o, dict):
            return {k: walk(v, (*path, str(k))) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v, path) for v in o]
        if isinstance(o, str):
            in_env = len(path) >= 2 and path[-2] == "env" and not is_safe_env(key)
            if o and (in_env or is_secret_key(key)):
                return REDACTED
            for s in secrets:
                o = o.replace(s, REDACTED)
        return o

    return walk(obj)


def run_to_dict(run: RunConfig) -> dict[str, Any]:
    return asdict(run) if is_dataclass(run) else dict(run)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary sibling and one rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


OWNED = ".tuneforge-owned.json"  # inside a directory tuneforge wrote: the files it put there


def _files_of(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if (p.is_file() or p.is_symlink()) and p.name != OWNED)


def replace_problem(target: Path) -> str | None:
    """Why ``target`` may not be replaced, or None: only a directory tuneforge wrote (its ownership record
    lists every file in it) is; a file of the user's (made there, or added to ours later) never is."""
    if not target.exists() and not target.is_symlink():
        return None
    if target.is_symlink() or not target.is_dir():
        return f"{target} exists and is not a directory tuneforge wrote"
    try:
        record = set(json.loads((target / OWNED).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        first = next(iter(_files_of(target)), None)
        return (f"{target} was not written by tuneforge (no {OWNED})"
                + (f"; it holds {target / first}" if first else ""))
    foreign = [f for f in _files_of(target) if f not in record]
    return f"{target / foreign[0]} was not written by tuneforge" if foreign else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), exchange) == 0


def atomic_write_dir(target: Path, write: Callable[[Path], Any], *, replace: bool = True) -> Path:
    """Build a directory with ``write(tmp)`` in a temporary sibling, then move it to ``target``, so no reader
    sees it half-written; an ownership record (:data:`OWNED`) lists the files written.

    An existing ``target`` is replaced only when tuneforge wrote all of it (:func:`replace_problem`; otherwise
    :class:`~tuneforge.errors.LaunchError` names the user's file and nothing is touched), by a swap: one atomic
    exchange where the system has it, else rename the old copy aside, rename the new one in, then delete the
    old one, so a complete copy exists at every instant. ``replace=False``: a ``target`` that appeared meanwhile
    (another process built the same cache entry) is kept and this build dropped."""
    from tuneforge.errors import LaunchError

    target.parent.mkdir(parents=True, exist_ok=True)
    if replace and (why := replace_problem(target)):
        raise LaunchError(f"refusing to replace {target}: {why}; move it elsewhere and run again")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        (tmp / OWNED).write_text(json.dumps({"files": _files_of(tmp)}), encoding="utf-8")
        if target.exists():
            if not replace:
                shutil.rmtree(tmp, ignore_errors=True)
                return target
            if (why := replace_problem(target)):  # something of the user's appeared while we were writing
                raise LaunchError(f"refusing to replace {target}: {why}; move it elsewhere and run again")
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old copy
                return target
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, aside / target.name)
            os.replace(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
            return target
        try:
            os.replace(tmp, target)
        except OSError:  # lost a race to another builder of the same entry: theirs is as good
            if replace or not target.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_config(run: RunConfig, run_dir: Path) -> Path:
    path = run_dir / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(redact(run_to_dict(run)), sort_keys=False, allow_unicode=True))
    return path


def read_config(run_dir: Path) -> RunConfig:
    """Re-type a run directory's config.yaml through the schema (what a worker or eval/merge reads)."""
    from omegaconf import OmegaConf

    from tuneforge.schema.store import SCHEMAS

    loaded = OmegaConf.load(run_dir / "config.yaml")
    schema = OmegaConf.structured(RunConfig)
    # a group with variants (backend: native | axolotl | ...) is typed by the variant its `name` selects
    for group, _, cls in SCHEMAS:
        if group and group in loaded and loaded[group].get("name") == getattr(cls, "name", None):
            schema[group] = OmegaConf.structured(cls)
    cfg = OmegaConf.merge(schema, loaded)
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def multinode_run_dir(run: RunConfig) -> Path:
    """The run directory every node of one multi-node launch computes alike (no shared clock needed).

    Named by a hash of the resolved config minus the node's own rank, so the same command on every node
    (on a shared filesystem) lands in one directory; relaunching the same config resumes there.
    """
    import hashlib

    cfg = run_to_dict(run)
    cfg["launcher"] = {k: v for k, v in cfg["launcher"].items() if k != "node_rank"}
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(run.output_root) / run.name / f"multinode-{digest}"


def explicit_run_dir(run: RunConfig) -> Path | None:
    """The directory ``run_dir=`` names, or None. An absolute path is taken as given; a relative one lies under
    output_root (``run_dir=sub`` -> ``<output_root>/sub``), except one that already leads into output_root from
    the current directory (``run_dir=outputs/lora-tiny/<stamp>``, as ``tuneforge runs`` lists it): that one
    names the same directory either way. Containment is checked by run_checks.check_paths."""
    if not run.run_dir or not str(run.run_dir).strip():
        return None
    given = Path(run.run_dir).expanduser()
    if given.is_absolute():
        return given
    root = Path(run.output_root).expanduser().resolve()
    here = given.resolve()
    if here != root and root in here.parents:
        return given
    return Path(run.output_root).expanduser() / given


def new_run_dir(run: RunConfig) -> Path:
    """The run's directory: the explicit (or multi-node) one, created if absent, or a new timestamped one,
    created atomically: ``mkdir`` without ``exist_ok``, so of several concurrent callers exactly one gets a
    given name and the others move on to ``<stamp>-<n>``. Ownership of an existing directory is checked by
    :func:`tuneforge.run_ownership.claim_run_dir`."""
    if run.run_dir or getattr(run.launcher, "num_nodes", 1) > 1:
        d = explicit_run_dir(run) or multinode_run_dir(run)
        d.mkdir(parents=True, exist_ok=True)
        return d.resolve()
    parent = Path(run.output_root).expanduser() / run.name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for n in range(100_000):
        d = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d.resolve()
    raise FileExistsError(f"no free run directory name under {parent}")


SUMMARY_KEYS = ("name", "run_dir", "backend", "wall_time_s")  # written by every backend's summary


def summary_problem(run_dir: Path) -> str | None:
    """Why ``run_dir/summary.json`` is not a finished run's summary (missing, truncated, not an object, keys
    missing), or None."""
    try:
        s = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"summary.json unreadable ({type(exc).__name__})"
    if not isinstance(s, dict) or (missing := [k for k in SUMMARY_KEYS if k not in s]):
        return "summary.json is not a run summary" + (f" (no {', '.join(missing)})" if isinstance(s, dict) else "")
    return None


def is_complete(run_dir: Path) -> bool:
    return not (run_dir / RUNNING).exists() and summary_problem(run_dir) is None


def weights_dir(run_dir: Path) -> Path:
    """adapter/ for LoRA-type runs, model/ for full fine-tunes."""
    return run_dir / "adapter" if (run_dir / "adapter").is_dir() else run_dir / "model"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("tuneforge", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "hydra-core",
                "bitsandbytes", "deepspeed", "axolotl"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def write_summary(run: RunConfig, run_dir: Path, result: dict[str, Any], wall_time_s: float,
                  **extra: Any) -> dict[str, Any]:
    """Write summary.json (last, atomically) and drop the RUNNING marker: the run is now complete.

    Called only by :func:`tuneforge.finish.finish_run`, the one way every executor ends a run."""
    summary = {
        "name": run.name,
        "run_dir": str(run_dir),
        "method": run.method.name,
        "model": run.model.name_or_path,
        "backend": run.backend.name,
        "launcher": run.launcher.name,
        **result,
        "wall_time_s": round(wall_time_s, 3),
        **extra,
        "versions": versions(),
        "git_commit": git_commit(),
        "config": redact(run_to_dict(run)),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    (run_dir / RUNNING).unlink(missing_ok=True)
    return summary
