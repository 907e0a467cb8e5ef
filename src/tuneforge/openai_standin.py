"""A local stand-in for the parts of OpenAI's API that a hosted fine-tuning run uses, on 127.0.0.1.

    python -m tuneforge.openai_standin [--port 8765] [--fail-job CODE:MESSAGE]
    # then, in another shell, export what it prints (OPENAI_BASE_URL, OPENAI_API_KEY) and
    make train recipe=openai-gpt4o-mini && make eval run=outputs/openai-gpt4o-mini/<ts>

It replaces only the remote service, so the whole flow (the official SDK, uploads, the job, polling, events,
the result file, checkpoints, chat completions for eval/chat) runs without a key. Endpoints:

    POST /v1/files                         multipart upload -> FileObject
    GET  /v1/files/{id}/content            the bytes (a result file: base64 CSV, as OpenAI serves it)
    POST /v1/fine_tuning/jobs              -> FineTuningJob (validating_files)
    GET  /v1/fine_tuning/jobs              cursor page (limit, after)
    GET  /v1/fine_tuning/jobs/{id}         -> FineTuningJob; every retrieve advances the simulated job
    GET  /v1/fine_tuning/jobs/{id}/events  cursor page of FineTuningJobEvent, newest first
    GET  /v1/fine_tuning/jobs/{id}/checkpoints   cursor page of FineTuningJobCheckpoint
    POST /v1/fine_tuning/jobs/{id}/cancel  -> FineTuningJob (cancelled)
    POST /v1/chat/completions              -> ChatCompletion

Response bodies carry the fields of the SDK's own types (openai.types.*; tests/backends/test_openai.py
validates every one with them). The simulation, stated so nobody mistakes it for a model: a job validates,
queues, then runs ``epochs x ceil(examples / batch size)`` steps, advancing ``steps_per_poll`` steps per
retrieve with a made-up, decreasing loss curve; a "fine-tuned model" answers a chat with the assistant turn of
the training example whose user turn shares the most words with the question, a base model with a fixed
generic sentence. Faults (429 with Retry-After, 5xx, a dropped connection) are scripted per request for tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from tuneforge.openai_standin_wire import _error, _Handler, _multipart, _page  # noqa: F401

DEFAULT_KEY = "sk-standin-local-key-not-secret"
BASE_ANSWER = "Xin lỗi, tôi là mô hình chung và không có thông tin chi tiết về câu hỏi này."


@dataclass
class Fault:
    """Answer the ``times`` next requests matching ``method`` + ``path`` (a regex) with ``status``
    (and Retry-After), or drop the connection without an answer (``status=0``)."""

    method: str
    path: str
    status: int
    times: int = 1
    retry_after: float | None = None


@dataclass
class Job:
    body: dict[str, Any]
    total_steps: int
    examples: list[dict[str, Any]]
    step: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    retrieves: int = 0


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


class StandIn:
    def __init__(self, *, api_key: str = DEFAULT_KEY, steps_per_poll: int | None = None,
                 fail_job: tuple[str, str] | None = None, org: str = "org-standin"):
        self.api_key, self.org = api_key, org
        self.steps_per_poll, self.fail_job = steps_per_poll, fail_job
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, float]] = []  # (method, path, monotonic time), faults included
        self.responses: list[tuple[str, dict[str, Any]]] = []  # (SDK type name, body) of every JSON answer
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        standin = self

        class Handler(_Handler):
            owner = standin

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def count(self, method: str, path_regex: str) -> int:
        return len(self.times(method, path_regex))

    def times(self, method: str, path_regex: str) -> list[float]:
        return [t for m, p, t in self.requests if m == method and re.fullmatch(path_regex, p)]

    # --- objects (fields of the SDK's types) ---------------------------------------------------------

    def _file(self, name: str, data: bytes, purpose: str) -> dict[str, Any]:
        fid = "file-" + secrets.token_hex(12)
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()), "filename": name,
               "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}
        self.files[fid], self.contents[fid] = obj, data
        return obj

    def _event(self, job: Job, message: str, *, level: str = "info", data: dict | None = None,
               kind: str = "message") -> None:
        job.events.append({"id": "ftevent-" + secrets.token_hex(12), "object": "fine_tuning.job.event",
                           "created_at": int(time.time()), "level": level, "message": message, "data": data or {},
                           "type": kind})

    def create_job(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        train = req.get("training_file")
        if train not in self.files:
            return 400, _error(f"invalid training_file: {train}", "invalid_request_error", "training_file")
        if req.get("validation_file") and req["validation_file"] not in self.files:
            return 400, _error("invalid validation_file", "invalid_request_error", "validation_file")
        examples = [json.loads(line) for line in self.contents[train].decode("utf-8").splitlines() if line.strip()]
        from tuneforge.backends.openai_dpo import dpo_messages, job_problem

        method = req.get("method") or {"type": "supervised"}
        kind = method.get("type", "supervised")
        if (problem := job_problem(method, examples)) is not None:  # the file must match the method
            return 400, _error(problem, "invalid_request_error", "method" if "method" in problem else "training_file")
        if kind == "dpo":
            examples = [{"messages": dpo_messages(ex)} for ex in examples]
        hp = dict((method.get(kind) or {}).get("hyperparameters") or req.get("hyperparameters") or {})
        n = len(examples)
        epochs = hp.get("n_epochs", "auto")
        epochs = 3 if epochs == "auto" else int(epochs)
        batch = hp.get("batch_size", "auto")
        batch = max(1, min(256, round(n * 0.002))) if batch == "auto" else int(batch)
        lrm = hp.get("learning_rate_multiplier", "auto")
        lrm = 1.8 if lrm == "auto" else float(lrm)
        resolved = {"n_epochs": epochs, "batch_size": batch, "learning_rate_multiplier": lrm}
        if kind == "dpo":
            resolved["beta"] = 0.1 if hp.get("beta", "auto") == "auto" else float(hp["beta"])
        jid = "ftjob-" + secrets.token_hex(12)
        body = {"id": jid, "object": "fine_tuning.job", "created_at": int(time.time()), "error": None,
                "fine_tuned_model": None, "finished_at": None, "hyperparameters": resolved,
                "model": req["model"], "organization_id": self.org, "result_files": [],
                "seed": int(req.get("seed") or 0), "status": "validating_files", "trained_tokens": None,
                "training_file": train, "validation_file": req.get("validation_file"), "estimated_finish": None,
                "integrations": [], "metadata": req.get("metadata"),
                "method": {"type": kind, kind: {"hyperparameters": resolved}},
                "suffix": req.get("suffix")}
        job = Job(body, epochs * math.ceil(n / batch), examples)
        self._event(job, f"Validating training file: {train}")
        self.jobs[jid] = job
        return 200, self._public(job)

    def _public(self, job: Job) -> dict[str, Any]:
        return {k: v for k, v in job.body.items() if k != "suffix"}

    def advance(self, job: Job) -> None:
        b = job.body
        job.retrieves += 1
        if b["status"] in ("succeeded", "failed", "cancelled"):
            return
        if b["status"] == "validating_files":
            if self.fail_job:
                code, message = self.fail_job
                b.update(status="failed", error={"code": code, "message": message, "param": "training_file"},
                         finished_at=int(time.time()))
                self._event(job, f"Fine-tuning job failed: {message}", level="error")
                return
            b["status"] = "queued"
            self._event(job, "Files validated, moving job to queued state")
            return
        if b["status"] == "queued":
            b["status"] = "running"
            b["estimated_finish"] = int(time.time()) + 60
            self._event(job, "Fine-tuning job started")
            return
        per_poll = self.steps_per_poll or max(1, math.ceil(job.total_steps / 6))
        for _ in range(per_poll):
            if job.step >= job.total_steps:
                break
            job.step += 1
            data = _metrics(job.step, job.total_steps, with_valid=b["validation_file"] is not None)
            self._event(job, f"Step {job.step}/{job.total_steps}: training loss={data['train_loss']:.4f}",
                        data=data, kind="metrics")
            epoch_len = job.total_steps // b["hyperparameters"]["n_epochs"]
            if epoch_len and job.step % epoch_len == 0:
                self._checkpoint(job)
        if job.step >= job.total_steps:
            self._succeed(job)

    def _checkpoint(self, job: Job) -> None:
        m = _metrics(job.step, job.total_steps, with_valid=job.body["validation_file"] is not None)
        metrics = {"step": float(job.step), "train_loss": m["train_loss"],
                   "train_mean_token_accuracy": m["train_mean_token_accuracy"],
                   "valid_loss": m.get("valid_loss"), "valid_mean_token_accuracy": m.get("valid_mean_token_accuracy"),
                   "full_valid_loss": m.get("valid_loss"),
                   "full_valid_mean_token_accuracy": m.get("valid_mean_token_accuracy")}
        job.checkpoints.append({"id": "ftckpt_" + secrets.token_hex(10), "object": "fine_tuning.job.checkpoint",
                                "created_at": int(time.time()), "fine_tuning_job_id": job.body["id"],
                                "fine_tuned_model_checkpoint": f"{self._model_name(job)}:ckpt-step-{job.step}",
                                "metrics": metrics, "step_number": job.step})

    def _model_name(self, job: Job) -> str:
        b = job.body
        return f"ft:{b['model']}:{self.org.removeprefix('org-')}:{b.get('suffix') or ''}:{b['id'][-8:]}"

    def _succeed(self, job: Job) -> None:
        from tuneforge.backends.openai_data import encoder_for, example_tokens

        b = job.body
        rows = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
        for s in range(1, job.total_steps + 1):
            m = _metrics(s, job.total_steps, with_valid=b["validation_file"] is not None)
            rows.append(f"{s},{m['train_loss']:.5f},{m['train_mean_token_accuracy']:.5f},"
                        f"{m.get('valid_loss', '')},{m.get('valid_mean_token_accuracy', '')}")
        result = self._file(f"step_metrics_{b['id']}.csv", base64.b64encode(("\n".join(rows) + "\n").encode()),
                            "fine-tune-results")
        enc = encoder_for(b["model"])
        tokens = sum(example_tokens(enc, ex["messages"]) for ex in job.examples)
        b.update(status="succeeded", fine_tuned_model=self._model_name(job), finished_at=int(time.time()),
                 trained_tokens=tokens * b["hyperparameters"]["n_epochs"], result_files=[result["id"]],
                 estimated_finish=None)
        self._event(job, "New fine-tuned model created")
        self._event(job, "The job has successfully completed")

    def chat(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = req.get("model", "")
        messages = req.get("messages") or []
        question = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        answer = BASE_ANSWER
        if model.startswith("ft:"):
            job = next((j for j in self.jobs.values() if j.body.get("fine_tuned_model") and
                        model.startswith(j.body["fine_tuned_model"])), None)
            if job is None:
                return 404, _error(f"The model `{model}` does not exist or you do not have access to it.",
                                   "invalid_request_error", None, code="model_not_found")
            q = _words(question)

            def overlap(ex: dict[str, Any]) -> int:
                users = " ".join(m["content"] for m in ex["messages"] if m["role"] == "user")
                return len(q & _words(users))

            best = max(job.examples, key=overlap)
            answer = next(m["content"] for m in reversed(best["messages"]) if m["role"] == "assistant")
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        words = answer.split()
        if limit and len(words) > limit:
            answer, finish = " ".join(words[:limit]), "length"
        else:
            finish = "stop"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(answer.split())
        return 200, {"id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion",
                     "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                                  "message": {"role": "assistant", "content": answer, "refusal": None}}],
                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                               "total_tokens": prompt_tokens + completion_tokens}}


def _metrics(step: int, total: int, *, with_valid: bool) -> dict[str, Any]:
    """A made-up, decreasing loss curve (deterministic), in the fields OpenAI's metrics events carry."""
    loss = 0.25 + 1.6 * math.exp(-3.0 * step / total) + 0.03 * math.sin(step)
    data: dict[str, Any] = {"step": step, "train_loss": round(loss, 5),
                            "train_mean_token_accuracy": round(max(0.0, 1 - loss / 2.5), 5), "total_steps": total}
    if with_valid and (step % 10 == 0 or step == total):
        vloss = loss + 0.08
        data.update(valid_loss=round(vloss, 5), valid_mean_token_accuracy=round(max(0.0, 1 - vloss / 2.5), 5))
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tuneforge.openai_standin", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--key", default=DEFAULT_KEY, help="the API key clients must send")
    p.add_argument("--steps-per-poll", type=int, default=None, help="training steps a job advances per retrieve")
    p.add_argument("--fail-job", metavar="CODE:MESSAGE", help="every job fails validation with this error")
    a = p.parse_args(argv)
    fail = tuple(a.fail_job.split(":", 1)) if a.fail_job else None
    standin = StandIn(api_key=a.key, steps_per_poll=a.steps_per_poll, fail_job=fail)  # type: ignore[arg-type]
    url = standin.start(a.port)
    print(f"OpenAI stand-in listening on {url} (Ctrl-C stops it). In another shell:\n"
          f"  export OPENAI_BASE_URL={url} OPENAI_API_KEY={a.key}\n"
          "  make train recipe=openai-gpt4o-mini backend.poll_interval_s=0.5", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
