"""Which trainer checkpoint a resume may trust.

A checkpoint is complete when its ``trainer_state.json`` parses and every ``*.safetensors`` file in it is
whole (its header parses and the file is as long as the header says), and, when tuneforge sealed it, every
file still has the size and the sha256 recorded in its seal (a file of the right size with corrupt bytes is
caught before torch reads it). :class:`CheckpointSealCallback` seals each checkpoint after
the Trainer wrote it: it fsyncs every file and the directory, then writes ``tuneforge-complete.json`` (fsynced
too) last. A torn checkpoint is skipped and the previous one is chosen, so a crash mid-save never becomes
a crash loop on the next resume.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from tuneforge.callbacks import CallbackBase

SEAL = "tuneforge-complete.json"


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path``, then each directory, so a power loss cannot leave them half-written."""
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with p.open("rb") as f:
                os.fsync(f.fileno())
    for d in [*sorted({p.parent for p in path.rglob("*")}), path]:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _safetensors_whole(path: Path) -> bool:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                return False
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return size == 8 + n + end


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from, or None when it is complete."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable ({type(exc).__name__})"
    seal = ckpt / SEAL
    if seal.is_file():
        try:
            record = json.loads(seal.read_text())
            sizes, sums = record["files"], record.get("sha256", {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"{SEAL} unreadable"
        for name, size in sizes.items():
            p = ckpt / name
            if not p.is_file() or p.stat().st_size != size:
                return f"{name} is not the size its seal recorded"
            if name in sums and _sha256(p) != sums[name]:
                return f"{name} is corrupt (its bytes do not match the sha256 its seal recorded)"
    for p in ckpt.rglob("*.safetensors"):
        if not _safetensors_whole(p):
            return f"{p.relative_to(ckpt)} is torn (header or length wrong)"
    return None


def latest_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` under ``ckpt_dir`` (torn or partial ones are skipped)."""
    if not ckpt_dir.is_dir():
        return None
    candidates = []
    for p in ckpt_dir.glob("checkpoint-*"):
        try:
            candidates.append((int(p.name.split("-")[-1]), p))
        except ValueError:
            continue
    for _, p in sorted(candidates, reverse=True):
        why = checkpoint_problem(p)
        if why is None:
            return str(p)
        print(f"tuneforge: skipping {p.name}: {why}; falling back to the previous checkpoint", flush=True)
    return None


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def seal_checkpoint(ckpt: Path) -> None:
    """Record every file's size and sha256 (verified before a resume trusts the checkpoint), fsynced, last."""
    paths = [p for p in sorted(ckpt.rglob("*")) if p.is_file() and p.name != SEAL and not p.name.startswith(f".{SEAL}")]
    files = {str(p.relative_to(ckpt)): p.stat().st_size for p in paths}
    sums = {str(p.relative_to(ckpt)): _sha256(p) for p in paths}
    fsync_tree(ckpt)
    tmp = ckpt / f".{SEAL}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump({"files": files, "sha256": sums}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, ckpt / SEAL)
    fd = os.open(ckpt, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointSealCallback(CallbackBase):
    """TrainerCallback (duck-typed, like MetricsCallback): seal each checkpoint once the Trainer saved it."""


    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            seal_checkpoint(ckpt)


def _loss_sum_until(log_history: list[dict], step: int) -> float:
    """Sum of the per-step training losses up to ``step``, from the logged interval means."""
    total, prev = 0.0, 0
    for rec in log_history:
        s = rec.get("step", 0)
        if "loss" in rec and s <= step:
            total += rec["loss"] * (s - prev)
            prev = s
    if prev and prev < step:  # steps after the last log before the checkpoint: their mean was not logged
        last = [r["loss"] for r in log_history if "loss" in r and r.get("step", 0) <= step][-1]
        total += last * (step - prev)
    return total


def train_or_resume(trainer: Any, run_dir: Path) -> Any:
    """``trainer.train()``, resumed from the latest complete checkpoint, with exact bookkeeping:

    - a run whose checkpoint already reached ``max_steps`` (killed during the final weight save) trains no
      further step: the checkpoint's weights and state are loaded and only the save is redone;
    - ``training_loss`` is the mean over the whole run, not over the resumed part divided by all steps.
    """
    return _train_or_resume(trainer, run_dir)


def _train_or_resume(trainer: Any, run_dir: Path) -> Any:
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    ckpt = latest_complete_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        return trainer.train()
    before = TrainerState.load_from_json(str(Path(ckpt) / "trainer_state.json"))
    start = before.global_step
    max_steps = trainer.args.max_steps
    print(f"tuneforge: resuming from {Path(ckpt).name} (step {start})", flush=True)
    if max_steps > 0 and start >= max_steps:
        trainer._load_from_checkpoint(ckpt)  # the weights only: there is nothing left to train
        trainer.state = before
        mean = _loss_sum_until(before.log_history, start) / max(start, 1)
        return TrainOutput(start, mean, {"train_runtime": 0.0, "train_loss": mean})
    out = trainer.train(resume_from_checkpoint=ckpt)
    steps = max(out.global_step, 1)
    loss = out.training_loss + _loss_sum_until(before.log_history, start) / steps
    return TrainOutput(out.global_step, loss, {**out.metrics, "train_loss": loss})
