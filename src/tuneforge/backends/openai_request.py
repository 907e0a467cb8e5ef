"""What a hosted OpenAI job is made of: its file names, the key mapping and the request body (pure: no SDK)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tuneforge.schema.run import RunConfig

TRAIN_FILE = "openai_train.jsonl"
VAL_FILE = "openai_val.jsonl"
REQUEST_FILE = "openai_job_request.json"
CALLS_FILE = "openai_calls.txt"
DATA_CHECK_FILE = "openai_data_check.json"
JOB_FILE = "job.json"

# tuneforge key -> what it becomes in the job request (README "OpenAI hosted fine-tuning" shows this table)
MAPPING: list[tuple[str, str]] = [
    ("model.name_or_path", "model"),
    ("dataset (prepared train split)", f"training_file (uploaded {TRAIN_FILE}, purpose fine-tune)"),
    ("dataset (prepared val split)", f"validation_file (uploaded {VAL_FILE}; omitted when the split is empty)"),
    ("hparams.epochs  | backend.n_epochs", "method.supervised.hyperparameters.n_epochs"),
    ("hparams.micro_batch_size x hparams.grad_accumulation  | backend.batch_size",
     "method.supervised.hyperparameters.batch_size"),
    ("backend.learning_rate_multiplier", "method.supervised.hyperparameters.learning_rate_multiplier"),
    ("hparams.seed", "seed"),
    ("backend.suffix", "suffix"),
    ("backend.metadata", "metadata"),
    ("backend.additional_parameters", "merged into the request last (checked against the SDK's JobCreateParams)"),
]
# every other hparams/optim key must keep its schema default: tuneforge.backends.coverage's table for openai


def _hparam(value: Any, key: str, *, integer: bool) -> Iterable[str]:
    if value is None or value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        yield f"{key}={value!r} must be a number or \"auto\""
    elif integer and (value != int(value) or value < 1):
        yield f"{key}={value!r} must be a whole number >= 1 or \"auto\""
    elif not value > 0:
        yield f"{key}={value!r} must be > 0 or \"auto\""


def hyperparameters(run: RunConfig) -> dict[str, Any]:
    b, h = run.backend, run.hparams
    epochs = b.n_epochs if b.n_epochs is not None else h.epochs
    batch = b.batch_size if b.batch_size is not None else h.micro_batch_size * h.grad_accumulation
    lrm = b.learning_rate_multiplier

    def num(v: Any) -> Any:
        return v if v == "auto" else (int(v) if float(v) == int(v) else v)

    return {"n_epochs": num(epochs), "batch_size": num(batch),
            "learning_rate_multiplier": lrm if lrm == "auto" else float(lrm)}


def build_job_request(run: RunConfig, training_file: str, validation_file: str | None) -> dict[str, Any]:
    """The body of POST /v1/fine_tuning/jobs. Pure: no SDK, no network."""
    b = run.backend
    req: dict[str, Any] = {"model": run.model.name_or_path, "training_file": training_file}
    if validation_file:
        req["validation_file"] = validation_file
    if run.objective.name == "dpo":  # openai.types.fine_tuning.DpoMethodParam: beta beside the supervised ones
        req["method"] = {"type": "dpo", "dpo": {"hyperparameters": {**hyperparameters(run),
                                                                    "beta": run.objective.beta}}}
    else:
        req["method"] = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters(run)}}
    req["seed"] = run.hparams.seed
    if b.suffix:
        req["suffix"] = b.suffix
    if b.metadata:
        req["metadata"] = dict(b.metadata)
    req.update(dict(b.additional_parameters))
    return req
