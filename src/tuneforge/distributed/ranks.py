"""What each rank of a multi-process run leaves behind: ``<run_dir>/ranks/rank-<k>.json``.

Data parallel is correct when every rank trained (same step count), each saw its own shard of the data and
all ended with the same weights. Each rank records exactly that: its rank/world size/host, the steps, a
digest of every training sequence it was given (the sample ids), and a SHA-256 of its trainable weights.
Written only when the world size is > 1; torch is imported inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

RANKS_DIR = "ranks"


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def sequence_ids(inputs: dict[str, Any]) -> list[str]:
    """A short digest per sequence of a batch: its non-padding token ids."""
    ids = inputs.get("input_ids")
    if ids is None:
        return []
    mask = inputs.get("attention_mask")
    out = []
    for i in range(ids.shape[0]):
        row = ids[i] if mask is None or mask.dim() != 2 else ids[i][mask[i].bool()]
        out.append(hashlib.sha1(row.detach().cpu().numpy().tobytes()).hexdigest()[:16])
    return out


def recording_trainer(trainer_cls: type) -> type:
    """A subclass of ``trainer_cls`` that remembers the ids of the sequences this rank trained on."""

    class SampleRecordingTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            self.__dict__.setdefault("seen_sample_ids", []).extend(sequence_ids(inputs))
            return super().training_step(model, inputs, *args, **kwargs)

    SampleRecordingTrainer.__name__ = f"SampleRecording{trainer_cls.__name__}"
    return SampleRecordingTrainer


def trainable_weights_sha256(model: Any) -> str:
    """SHA-256 over the names and values of the trainable parameters (gathered first under ZeRO-3)."""
    import contextlib

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gather: Any = contextlib.nullcontext()
    if any(hasattr(p, "ds_id") for _, p in params):  # ZeRO-3 partitions parameters: gather full values
        import deepspeed

        gather = deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None)
    h = hashlib.sha256()
    with gather:
        for name, p in params:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write_rank_record(run_dir: Path, trainer: Any) -> Path | None:
    """Write this rank's record (every rank calls it; nothing is written for a single process)."""
    if world_size_from_env() <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    record = {
        "rank": rank,
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "world_size": world_size_from_env(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "steps": trainer.state.global_step,
        "sample_ids": list(getattr(trainer, "seen_sample_ids", [])),
        "trainable_weights_sha256": trainable_weights_sha256(trainer.model),
        "backend": getattr(getattr(trainer.accelerator, "state", None), "backend", None),
        "distributed_type": str(getattr(trainer.accelerator, "distributed_type", "")),
    }
    from tuneforge.rundir import atomic_write_json

    path = Path(run_dir) / RANKS_DIR / f"rank-{rank}.json"
    atomic_write_json(path, record)
    return path
