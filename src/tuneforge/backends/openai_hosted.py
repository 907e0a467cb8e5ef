"""The OpenAI backend: the same recipe, trained by OpenAI's hosted fine-tuning API.

    make plan  recipe=openai-gpt4o-mini        files, token counts, cost, the exact request and API calls
    make train recipe=openai-gpt4o-mini        check, upload, create the job, follow it to the end

Translation (:func:`build_job_request`) is a pure function of the run config: the request body of
``POST /v1/fine_tuning/jobs`` in the current shape, ``method={"type": "supervised", "supervised":
{"hyperparameters": {...}}}``. What maps where is :data:`MAPPING`; everything else that a run config can say
and a hosted job cannot honour (a LoRA rank, a quantization, DeepSpeed, another launcher, optimizer settings,
max_steps, ...) is refused by :meth:`OpenAIBackend.check` at compose time, never dropped.

Before a run directory exists, :meth:`OpenAIBackend.preflight` checks the files OpenAI would receive by its
own format rules, counts their tokens with tiktoken, estimates the cost and asks above
``backend.max_cost_usd`` (``--yes`` skips the question). The job itself is in :mod:`openai_job`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuneforge.backends.openai_request import (  # noqa: F401  (the names the backend's files use)
    CALLS_FILE,
    DATA_CHECK_FILE,
    JOB_FILE,
    MAPPING,
    REQUEST_FILE,
    TRAIN_FILE,
    VAL_FILE,
    _hparam,
    build_job_request,
    hyperparameters,
)
from tuneforge.errors import ConfigError, DataError
from tuneforge.schema.components import CONVERSATION_FORMATS, BackendBase, LossMask
from tuneforge.schema.run import HParamsConfig, RunConfig
from tuneforge.strategies.registry import get_strategy


def _job_create_fields() -> set[str] | None:
    try:
        from openai.types.fine_tuning.job_create_params import JobCreateParams
    except ImportError:
        return None
    return set(JobCreateParams.__annotations__)


class OpenAIBackend(BackendBase):
    name = "openai"
    hosted = True  # trains on the provider's servers: no local weights, memory estimate or model download
    objectives = ("sft", "dpo")  # objective=... it trains (tuneforge.schema.objective)
    data_formats = (*CONVERSATION_FORMATS, "preference")

    def coverage(self) -> dict[str, str]:
        from tuneforge.backends.coverage import openai_table

        return openai_table()

    def loss_mask(self, run: RunConfig) -> LossMask:
        return "provider"  # OpenAI trains on the assistant messages (weight 0 leaves one out)

    def plan_notes(self, run: RunConfig) -> list[str]:
        """What the job will cost, on how many tokens, and whether backend.max_cost_usd lets it start."""
        check = self.data_check(run)
        limit = run.backend.max_cost_usd
        if check.cost_usd is None:
            cost = f"cost unknown: no price for {run.model.name_or_path} in backend.training_usd_per_1m_tokens"
            gate = "`train` asks before starting (--yes skips the question)"
        else:
            cost = f"estimated ${check.cost_usd:,.2f}"
            gate = (f"within backend.max_cost_usd=${limit:,.2f}: starts without asking" if check.cost_usd <= limit
                    else f"above backend.max_cost_usd=${limit:,.2f}: `train` asks first (--yes skips the question)")
        how = "" if check.exact_tokens else "about "
        notes = [f"hosted job: {cost} = {how}{check.splits['train'].tokens:,} train tokens x {check.n_epochs} epochs "
                 f"({check.epochs_from}) = {check.trained_tokens:,} trained tokens; {gate}"]
        if check.errors:
            notes.append(f"{len(check.errors)} example(s) break OpenAI's format rules (openai_calls.txt lists them): "
                         "`train` refuses to upload")
        from tuneforge.backends.openai_sunset import sunset_notes

        return notes + sunset_notes(run)  # OpenAI's end of self-serve fine-tuning, and the open recipe

    # --- compose time -------------------------------------------------------------------------------

    def check(self, run: RunConfig) -> Iterable[str]:
        b, m = run.backend, run.method
        if get_strategy(run).uses_adapter:
            yield (f"method={m.name}: backend=openai cannot send LoRA settings (method.r={m.r}, method.alpha="
                   f"{m.alpha}, target modules): OpenAI decides how its models are tuned; use method=full")
        if run.distributed.name != "none":
            yield (f"distributed={run.distributed.name}: DeepSpeed has no meaning for backend=openai; use "
                   "distributed=none")
        if run.tracking.name != "none":
            yield f"tracking={run.tracking.name}: not wired for backend=openai (metrics.jsonl has the job's metrics)"
        if run.launcher.name != "local":
            yield (f"launcher={run.launcher.name}: backend=openai runs on OpenAI's servers and is followed from "
                   "this machine; use launcher=local")
        if run.model.tiny is not None:
            yield (f"model={run.model.name_or_path}: a local model cannot be fine-tuned by OpenAI; use "
                   "model=gpt-4o-mini or model.name_or_path=<an OpenAI fine-tunable model id>")
        h, d = run.hparams, HParamsConfig()
        if b.n_epochs is not None and h.epochs != d.epochs:
            yield (f"hparams.epochs={h.epochs} and backend.n_epochs={b.n_epochs!r} both set the epochs; set one "
                   "(backend.n_epochs=null uses hparams.epochs)")
        if b.batch_size is not None and (h.micro_batch_size, h.grad_accumulation) != (d.micro_batch_size,
                                                                                     d.grad_accumulation):
            yield (f"hparams.micro_batch_size/grad_accumulation and backend.batch_size={b.batch_size!r} both set "
                   "the batch size; set one (backend.batch_size=null uses micro_batch_size x grad_accumulation)")
        if b.n_epochs is None and h.epochs != int(h.epochs):
            yield f"hparams.epochs={h.epochs}: OpenAI trains whole epochs; use a whole number"
        yield from _hparam(b.n_epochs, "backend.n_epochs", integer=True)
        yield from _hparam(b.batch_size, "backend.batch_size", integer=True)
        yield from _hparam(b.learning_rate_multiplier, "backend.learning_rate_multiplier", integer=False)
        if b.suffix is not None and not 1 <= len(b.suffix) <= 64:
            yield f"backend.suffix={b.suffix!r} must be 1..64 characters"
        if len(b.metadata) > 16 or any(len(k) > 64 or len(str(v)) > 512 for k, v in b.metadata.items()):
            yield "backend.metadata: at most 16 pairs, keys up to 64 and values up to 512 characters"
        if b.max_cost_usd < 0:
            yield f"backend.max_cost_usd={b.max_cost_usd} must be >= 0"
        if not 0 < b.poll_interval_s <= b.max_poll_interval_s:
            yield "backend.poll_interval_s must be > 0 and <= backend.max_poll_interval_s"
        if b.max_retries < 0:
            yield f"backend.max_retries={b.max_retries} must be >= 0"
        fields = _job_create_fields() if b.additional_parameters else None  # importing the SDK takes a second
        if fields is not None:
            for key in b.additional_parameters:
                if key not in fields:
                    yield (f"backend.additional_parameters.{key}: not a field of OpenAI's job request; valid: "
                           + ", ".join(sorted(fields)))
        yield from self._check_reattach(run)
        yield from _objective_problems(run)

    def _check_reattach(self, run: RunConfig) -> Iterable[str]:
        """run_dir= of an earlier job: this config must describe the same job, or it would not be re-attached."""
        if not run.run_dir:
            return
        path = Path(run.run_dir) / JOB_FILE
        if not path.is_file():
            return
        try:
            job = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            yield f"run_dir={run.run_dir}: {JOB_FILE} is unreadable ({exc}); use a new run_dir"
            return
        files = job.get("files", {})
        if "request" not in job:
            return  # files uploaded, job not created yet: this run creates it
        want = build_job_request(run, files.get("train", ""), files.get("val"))
        diff = sorted(k for k in set(want) | set(job["request"]) if want.get(k) != job["request"].get(k))
        if diff:
            yield (f"run_dir={run.run_dir} holds OpenAI job {job.get('job_id')} created with other settings "
                   f"({', '.join(diff)} differ); re-attach with the same config, or use a new run_dir")

    # --- files --------------------------------------------------------------------------------------

    def _splits(self, run: RunConfig) -> dict[str, Path]:
        from tuneforge.data.prepare import prepare_splits

        data = prepare_splits(run.dataset)
        files = {"train": Path(data.train)}
        if data.sizes.get("val", 0) > 0:
            files["val"] = Path(data.val)
        if run.objective.name == "dpo":  # OpenAI's DPO lines, written once beside the prepared splits
            from tuneforge.backends.openai_dpo import write_dpo_file

            files = {k: write_dpo_file(p, p.parent / f"openai-dpo-{p.name}") for k, p in files.items()}
        return files

    def data_check(self, run: RunConfig) -> Any:
        """OpenAI's format rules, token counts and cost of the files that go up. One command asks for it up to
        three times (preflight, the plan's files, the plan's notes): counted once per unchanged input."""
        from tuneforge.backends.openai_data import check_hosted_data

        b = run.backend
        model = run.model.name_or_path
        n_epochs = hyperparameters(run)["n_epochs"]
        files = self._splits(run)
        key = (tuple((name, str(f), f.stat().st_size, f.stat().st_mtime_ns) for name, f in files.items()), model,
               str(n_epochs), b.example_token_limits.get(model), b.training_usd_per_1m_tokens.get(model),
               b.prices_as_of)
        cached = getattr(self, "_last_check", None)
        if cached is None or cached[0] != key:
            cached = (key, check_hosted_data(files, model=model, n_epochs=n_epochs,
                                             example_token_limit=b.example_token_limits.get(model),
                                             usd_per_1m=b.training_usd_per_1m_tokens.get(model),
                                             prices_as_of=b.prices_as_of))
            self._last_check = cached
        return cached[1]

    def artifacts(self, run: RunConfig, run_dir: Path) -> dict[str, str]:
        check = self.data_check(run)
        train_id, val_id = f"<file id of {TRAIN_FILE}>", (f"<file id of {VAL_FILE}>" if "val" in check.splits
                                                           else None)
        request = build_job_request(run, train_id, val_id)
        return {REQUEST_FILE: json.dumps(request, indent=2, ensure_ascii=False) + "\n",
                CALLS_FILE: wire_calls(run, request, "val" in check.splits) + "\n# data check\n" + check.render()
                + "\n",
                DATA_CHECK_FILE: json.dumps(check.as_dict(), indent=2, ensure_ascii=False) + "\n"}

    def preflight(self, run: RunConfig, *, yes: bool = False) -> Any:
        """Before the run directory exists: the key, format rules, tokens, cost; asks above backend.max_cost_usd."""
        from tuneforge.openai_api import api_key

        api_key(run.backend)  # a missing key fails here, not after a run directory was made
        if run.run_dir and (Path(run.run_dir) / JOB_FILE).is_file() and "job_id" in json.loads(
                (Path(run.run_dir) / JOB_FILE).read_text(encoding="utf-8")):
            return None  # re-attaching: the job exists, nothing is uploaded or paid again
        check = self.data_check(run)
        print(check.render(), file=sys.stderr)
        if check.errors:
            raise DataError(f"{len(check.errors)} example(s) break OpenAI's fine-tuning format rules; nothing was "
                            "uploaded:\n  " + "\n  ".join(check.errors[:20]))
        cost, limit = check.cost_usd, run.backend.max_cost_usd
        if cost is None or cost > limit:
            what = f"estimated ${cost:,.2f}" if cost is not None else "cost unknown (no price for this model)"
            if not yes and not _confirm(f"OpenAI fine-tuning job {what}, above backend.max_cost_usd=${limit:,.2f}. "
                                        "Start it? [y/N] "):
                raise ConfigError(f"not started: {what} is above backend.max_cost_usd=${limit:,.2f}; re-run with "
                                  "--yes, or raise backend.max_cost_usd")
        return check

    def prepare(self, run: RunConfig, run_dir: Path) -> dict[str, Path]:
        """The exact files that go up (copies of the prepared splits) + the data check, in the run directory."""
        from tuneforge.rundir import atomic_write_bytes, atomic_write_text

        (run_dir / "FAILED").unlink(missing_ok=True)  # re-attaching after a detach or a killed follower
        out = {}
        for split, src in self._splits(run).items():
            dest = run_dir / (TRAIN_FILE if split == "train" else VAL_FILE)
            if not dest.is_file():
                atomic_write_bytes(dest, Path(src).read_bytes())
            out[split] = dest
        for name, text in self.artifacts(run, run_dir).items():
            atomic_write_text(run_dir / name, text)
            out[name] = run_dir / name
        return out

    # --- the job ------------------------------------------------------------------------------------

    def job_states(self, entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        """Each job's state from the API (one retrieve each), else from its job.json."""
        from tuneforge.backends.openai_job import job_state

        out = {}
        for e in entries:
            s = job_state(Path(e["run_dir"]))
            out[e["job_id"]] = {"state": s["state"], "source": s["source"], "time": "", "nodes": "",
                                "fine_tuned_model": s.get("fine_tuned_model") or ""}
        return out

    def cancel(self, run_dir: Path) -> str | None:
        from tuneforge.backends.openai_job import cancel_run, read_job

        if not read_job(run_dir).get("job_id"):
            return None
        job = cancel_run(run_dir)
        return f"OpenAI job {job.id}: {job.status}"

    def train(self, run: RunConfig, run_dir: Path) -> dict[str, Any]:
        from tuneforge.backends.openai_job import run_job

        return run_job(run, run_dir)

    def run_in_process(self, run: RunConfig, run_dir: Path) -> dict[str, Any] | None:
        return self.train(run, run_dir)


def _objective_problems(run: RunConfig) -> Iterable[str]:
    """OpenAI's DPO job has one loss, one beta and its own reference (the model being tuned)."""
    o = run.objective
    if o.name != "dpo":
        return
    if o.loss != "sigmoid":
        yield f"objective.loss_type={o.loss}: OpenAI's DPO job has one loss (sigmoid); leave it null"
    for key in ("max_prompt_length", "max_completion_length"):
        if getattr(o, key) is not None:
            yield f"objective.{key}: OpenAI's DPO job has no such setting; leave it null"
    if run.init.run is not None:
        yield ("init.run: an OpenAI job starts from model.name_or_path; to continue a fine-tuned model, set "
               "model.name_or_path=ft:... (its id) and init.run=null")


def _confirm(question: str) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    return input(question).strip().lower() in ("y", "yes")


def wire_calls(run: RunConfig, request: dict[str, Any], with_val: bool) -> str:
    """The HTTP calls one run makes, in order (what `plan` shows and the README lists)."""
    from tuneforge.openai_api import base_url

    url = base_url(run.backend).rstrip("/")
    body = json.dumps(request, ensure_ascii=False)
    lines = [f"# OpenAI API calls of this run (base URL {url}; SDK retries: {run.backend.max_retries} per request)",
             f"POST {url}/files                         multipart: purpose=fine-tune, file={TRAIN_FILE}"]
    if with_val:
        lines.append(f"POST {url}/files                         multipart: purpose=fine-tune, file={VAL_FILE}")
    lines += [f"GET  {url}/fine_tuning/jobs?limit=100      (only when re-attaching to uploaded files: adopt a "
              "job already created from them)",
              f"POST {url}/fine_tuning/jobs               {body}",
              f"GET  {url}/fine_tuning/jobs/<job id>                     every {run.backend.poll_interval_s:g}s, "
              f"backing off to {run.backend.max_poll_interval_s:g}s while nothing changes",
              f"GET  {url}/fine_tuning/jobs/<job id>/events?limit=100    after each poll, new events only",
              f"GET  {url}/fine_tuning/jobs/<job id>/checkpoints         once the job succeeded",
              f"GET  {url}/files/<result file id>/content                 the result file (per-step metrics CSV)"]
    return "\n".join(lines)
