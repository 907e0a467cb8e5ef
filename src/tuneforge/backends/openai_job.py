"""One hosted fine-tuning job: upload, create, follow to the end, recover; and cancel.

``job.json`` in the run directory is the job's record, rewritten atomically after every step that creates
something remote: the uploaded file ids first, then the job id and its request, *before* the first poll.
So a follower that is interrupted (Ctrl-C, a killed process, a lost connection after the SDK's retries)
leaves the job running, and ``tuneforge train ... run_dir=<dir>`` re-attaches: it reuses the uploaded files,
adopts a job already created from them (listing the jobs) and never creates a second one.

Following: ``retrieve`` the job, then the events newer than the last one seen (``list_events`` is newest
first and pages with ``after``). Metrics events become metrics.jsonl records (``step``, ``loss`` = train
loss, ``eval_loss`` = valid loss, token accuracies) and one live progress line; message events are printed.
The poll interval starts at ``backend.poll_interval_s`` and doubles while nothing changes, up to
``backend.max_poll_interval_s``. At the end the result file (OpenAI's per-step CSV) replaces
metrics.jsonl with every step, and the checkpoints are listed into the result.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tuneforge.backends.openai_request import JOB_FILE, TRAIN_FILE, VAL_FILE, build_job_request
from tuneforge.errors import LaunchError
from tuneforge.openai_api import api_error, make_client
from tuneforge.rundir import atomic_write_json, atomic_write_text
from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)

TERMINAL = ("succeeded", "failed", "cancelled")
EVENTS_FILE = "events.jsonl"
RESULTS_CSV = "results.csv"
_PAGE = 100


def read_job(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / JOB_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _save(run_dir: Path, job: dict[str, Any]) -> None:
    atomic_write_json(run_dir / JOB_FILE, job)


def _call(doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    import openai

    try:
        return fn(*args, **kwargs)
    except openai.OpenAIError as exc:
        raise api_error(exc, doing) from None


def _upload(client: Any, path: Path) -> str:
    with path.open("rb") as f:
        return _call(f"uploading {path.name}", client.files.create, file=(path.name, f), purpose="fine-tune").id


def submit(client: Any, run: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Upload what is not uploaded yet and create the job unless job.json already names one."""
    job = read_job(run_dir)
    job.setdefault("files", {})
    if job.get("job_id"):
        return job
    for split, name in (("train", TRAIN_FILE), ("val", VAL_FILE)):
        if split not in job["files"] and (run_dir / name).is_file():
            job["files"][split] = _upload(client, run_dir / name)
            _save(run_dir, job)
    request = build_job_request(run, job["files"]["train"], job["files"].get("val"))
    adopted = _job_created_from(client, job["files"]["train"]) if job.get("create_attempted") else None
    if adopted is None:
        job["create_attempted"] = True  # a crash during the request below must not create a second job
        _save(run_dir, job)
        adopted = _call("creating the fine-tuning job", client.fine_tuning.jobs.create, **request)
    job.update({"job_id": adopted.id, "request": request, "model": request["model"], "status": adopted.status,
                "created_at": adopted.created_at, "base_url": str(client.base_url)})
    _save(run_dir, job)
    from tuneforge.job_index import record_job

    record_job(Path(run.output_root), job_id=adopted.id, run_dir=run_dir, name=run.name, kind="openai",
               model=request["model"])
    return job


def _job_created_from(client: Any, training_file: str) -> Any:
    for j in _call("listing fine-tuning jobs", client.fine_tuning.jobs.list, limit=_PAGE):
        if j.training_file == training_file:
            return j
    return None


# --- following --------------------------------------------------------------------------------------------

def metrics_record(data: dict[str, Any]) -> dict[str, Any]:
    """A metrics event's data (or a result-file row) as a metrics.jsonl record (the local runs' keys)."""
    def num(key: str) -> float | None:
        v = data.get(key)
        try:
            return None if v in (None, "") else float(v)
        except (TypeError, ValueError):
            return None

    rec: dict[str, Any] = {"step": int(float(data["step"]))}
    for out, keys in (("loss", ("train_loss",)), ("token_accuracy", ("train_mean_token_accuracy", "train_accuracy")),
                      ("eval_loss", ("valid_loss",)), ("eval_token_accuracy", ("valid_mean_token_accuracy",)),
                      ("full_eval_loss", ("full_valid_loss",)),
                      ("full_eval_token_accuracy", ("full_valid_mean_token_accuracy",))):
        for k in keys:
            if num(k) is not None:
                rec[out] = num(k)
                break
    if data.get("total_steps"):
        rec["total_steps"] = int(data["total_steps"])
    return rec


def _metrics_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in rows if "step" in r]


def _seen_events(run_dir: Path) -> set[str]:
    path = run_dir / EVENTS_FILE
    if not path.is_file():
        return set()
    seen = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            seen.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by a killed follower
    return seen


def new_events(client: Any, job_id: str, seen: set[str]) -> list[Any]:
    """Events not seen yet, oldest first (the API lists newest first; stop at the first one seen)."""
    out = []
    for ev in _call("listing job events", client.fine_tuning.jobs.list_events, job_id, limit=_PAGE):
        if ev.id in seen:
            break
        out.append(ev)
    return out[::-1]


def follow(client: Any, run: RunConfig, run_dir: Path, job_id: str, stream: Any = None,
           sleep: Any = time.sleep) -> Any:
    """Poll until the job ends; write events.jsonl, metrics.jsonl and job.json as they change."""
    b = run.backend
    seen = _seen_events(run_dir)
    from tuneforge.console import ProgressLine

    progress = ProgressLine(f"[{job_id}]", None, out=stream, every_s=0.0)  # piped: a line per change
    t0 = time.monotonic()
    interval, status, last_metrics = b.poll_interval_s, None, None
    try:
        while True:
            job = _retrieve(client, job_id, run_dir)
            events = new_events(client, job_id, seen)
            with (run_dir / EVENTS_FILE).open("a", encoding="utf-8") as ev_f, \
                    (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as m_f:
                for ev in events:
                    seen.add(ev.id)
                    ev_f.write(json.dumps(ev.model_dump(mode="json"), ensure_ascii=False) + "\n")
                    if ev.type == "metrics" and isinstance(ev.data, dict) and "step" in ev.data:
                        last_metrics = {**metrics_record(ev.data), "elapsed_s": round(time.monotonic() - t0, 1)}
                        m_f.write(json.dumps(last_metrics) + "\n")
                    else:
                        progress.message(f"[{job_id}] {ev.level}: {ev.message}")
            changed = bool(events) or job.status != status
            if job.status != status:
                rec = read_job(run_dir)
                rec.update({"status": job.status, "fine_tuned_model": job.fine_tuned_model})
                _save(run_dir, rec)
            status = job.status
            m = last_metrics or {}
            progress.total = m.get("total_steps")
            progress.update(int(m.get("step") or 0), status=status, **{"train loss": m.get("loss"),
                                                                      "valid loss": m.get("eval_loss")})
            if status in TERMINAL:
                return job
            interval = b.poll_interval_s if changed else min(interval * 2, b.max_poll_interval_s)
            sleep(interval)
    finally:
        progress.close()


def result_rows(client: Any, job: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI's result file (a per-step CSV, base64-encoded by the API), as text and metrics records."""
    if not job.result_files:
        return None, []
    raw = _call("downloading the result file", client.files.content, job.result_files[0]).content
    text = raw.decode("utf-8", errors="replace")
    if not text.lstrip().startswith("step"):
        try:
            text = base64.b64decode(raw).decode("utf-8")
        except ValueError:
            return text, []
    rows = [metrics_record(r) for r in csv.DictReader(io.StringIO(text)) if r.get("step")]
    return text, rows


def finish(client: Any, run: RunConfig, run_dir: Path, job: Any) -> dict[str, Any]:
    """The run's result for summary.json (success), or LaunchError with OpenAI's error (failure/cancel)."""
    rec = read_job(run_dir)
    rec.update({"status": job.status, "fine_tuned_model": job.fine_tuned_model, "trained_tokens": job.trained_tokens,
                "finished_at": job.finished_at, "result_files": list(job.result_files or []),
                "error": job.error.model_dump() if job.error else None})
    _save(run_dir, rec)
    if job.status == "failed":
        err = job.error
        what = f"{err.code}: {err.message}" + (f" (param {err.param})" if err and err.param else "") if err \
            else "no error given"
        raise LaunchError(f"OpenAI fine-tuning job {job.id} failed: {what}")
    if job.status == "cancelled":
        raise LaunchError(f"OpenAI fine-tuning job {job.id} was cancelled")
    text, rows = result_rows(client, job)
    if text is not None:
        atomic_write_text(run_dir / RESULTS_CSV, text)
    if rows:  # the result file has every step; the events may have skipped some
        atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    else:
        rows = _metrics_lines(run_dir / "metrics.jsonl")
    checkpoints = [{"step": c.step_number, "model": c.fine_tuned_model_checkpoint,
                    **{k: v for k, v in c.metrics.model_dump().items() if v is not None}}
                   for c in _call("listing checkpoints", client.fine_tuning.jobs.checkpoints.list, job.id)]
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    evals = [r["eval_loss"] for r in rows if r.get("eval_loss") is not None]
    full = [r["full_eval_loss"] for r in rows if r.get("full_eval_loss") is not None]
    price = run.backend.training_usd_per_1m_tokens.get(job.model)
    hp = job.method.supervised.hyperparameters if job.method and job.method.supervised else job.hyperparameters
    return {
        "fine_tuned_model": job.fine_tuned_model,
        "job_id": job.id,
        "status": job.status,
        "base_model": job.model,
        "trained_tokens": job.trained_tokens,
        "tokens": job.trained_tokens,
        "hyperparameters": hp.model_dump() if hp is not None else None,
        "checkpoints": sorted(checkpoints, key=lambda c: c["step"]),
        "steps": max((r["step"] for r in rows), default=0),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_loss": sum(losses) / len(losses) if losses else None,  # the mean over every logged step
        "eval_loss": full[-1] if full else (evals[-1] if evals else None),
        "train_runtime_s": (job.finished_at - job.created_at) if job.finished_at else None,
        "cost_usd_estimate": round(job.trained_tokens / 1e6 * price, 4) if price and job.trained_tokens else None,
        "weights": None,
    }


class JobGoneError(LaunchError):
    """The job a run directory records does not exist on the server (deleted, another account or base_url)."""


def _retrieve(client: Any, job_id: str, run_dir: Path) -> Any:
    import openai

    try:
        return client.fine_tuning.jobs.retrieve(job_id)
    except openai.NotFoundError:
        raise JobGoneError(
            f"OpenAI job {job_id}, recorded in {Path(run_dir) / JOB_FILE}, does not exist on {client.base_url} "
            "(404: deleted, or made with another API key or base_url); nothing is running. Start a new run "
            "(without run_dir=...) to train again") from None
    except openai.OpenAIError as exc:
        raise api_error(exc, "retrieving the job") from None


def run_job(run: RunConfig, run_dir: Path, stream: Any = None) -> dict[str, Any]:
    """Submit (or re-attach) and follow to the end. ``backend.follow=false``: return once the job exists
    (a re-attached job is looked up first either way: one that is gone is an error, not a success)."""
    client = make_client(run.backend)
    reattach = bool(read_job(run_dir).get("job_id"))
    job = submit(client, run, run_dir)
    if reattach:
        _retrieve(client, job["job_id"], run_dir)
    out = stream or sys.stderr
    out.write(f"tuneforge: OpenAI job {job['job_id']} ({job['model']}); run dir {run_dir}\n")
    if not run.backend.follow:
        return {"submitted": True, "job_id": job["job_id"], "run_dir": str(run_dir)}
    try:
        final = follow(client, run, run_dir, job["job_id"], stream)
    except JobGoneError:
        raise
    except (KeyboardInterrupt, LaunchError) as exc:
        out.write(f"\ntuneforge: stopped following; OpenAI job {job['job_id']} keeps running on OpenAI's servers.\n"
                  f"  re-attach: tuneforge train <same arguments> run_dir={run_dir}\n"
                  f"  cancel:    tuneforge cancel run={run_dir}\n")
        if isinstance(exc, LaunchError):
            raise LaunchError(f"{exc} (job {job['job_id']} was not cancelled)") from None
        raise
    return finish(client, run, run_dir, final)


def cancel_run(run_dir: Path) -> Any:
    """Cancel the job a run directory records; returns the SDK's job object."""
    from tuneforge.rundir import read_config

    run_dir = Path(run_dir)
    job = read_job(run_dir)
    if not job.get("job_id"):
        raise LaunchError(f"{run_dir}: no OpenAI job recorded ({JOB_FILE} has no job_id)")
    run = read_config(run_dir)
    client = make_client(run.backend)
    cancelled = _call(f"cancelling {job['job_id']}", client.fine_tuning.jobs.cancel, job["job_id"])
    job["status"] = cancelled.status
    _save(run_dir, job)
    return cancelled


def job_state(run_dir: Path) -> dict[str, Any]:
    """The job's state from the API (one retrieve), else from job.json when the API cannot be reached."""
    from tuneforge.errors import TuneforgeError
    from tuneforge.rundir import read_config

    job = read_job(run_dir)
    if not job.get("job_id"):
        return {"state": "NOT CREATED", "source": "run dir"}
    try:
        client = make_client(read_config(run_dir).backend).with_options(max_retries=1, timeout=15)
        j = _call("retrieving the job", client.fine_tuning.jobs.retrieve, job["job_id"])
        return {"state": j.status, "source": "openai", "fine_tuned_model": j.fine_tuned_model}
    except (TuneforgeError, OSError) as exc:
        log.debug("job state of %s from job.json: %s", run_dir, exc)
        return {"state": job.get("status", "?"), "source": "job.json", "fine_tuned_model": job.get("fine_tuned_model")}
