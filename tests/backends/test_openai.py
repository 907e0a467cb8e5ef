"""backend=openai end to end, with no network: the official openai SDK talks to the local stand-in
(tuneforge.openai_standin) on 127.0.0.1, which replaces only OpenAI's service. Nothing of tuneforge's own
is replaced: each scenario goes through ``tuneforge.cli.main`` as a user's command would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import serving_standin
from tuneforge.cli import main
from tuneforge.openai_standin import Fault, StandIn

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-SECRET-5f3a9c2e7b1d"  # must never appear in anything a run writes or prints
FAST = ["backend.poll_interval_s=0.01", "backend.max_poll_interval_s=0.05"]


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch):
    with serving_standin(monkeypatch, KEY) as s:
        yield s


def args(out: Path, *extra: str) -> list[str]:
    return ["recipe=openai-gpt4o-mini", "dataset=sample-chat", f"output_root={out}", *FAST, *extra]


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in (out / "openai-gpt4o-mini").iterdir() if p.name != "plan"]
    return run_dir


def assert_sdk_shapes(standin: StandIn) -> None:
    """Every JSON body the stand-in sent parses into the SDK's own type, with no field the type lacks."""
    from openai.types import FileObject
    from openai.types.chat import ChatCompletion
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    types = {t.__name__: t for t in (FileObject, ChatCompletion, FineTuningJob, FineTuningJobEvent,
                                     FineTuningJobCheckpoint)}
    assert standin.responses
    for kind, body in standin.responses:
        items = body["data"] if body.get("object") == "list" else [body]
        if body.get("object") == "list":
            assert set(body) == {"object", "data", "has_more"}
        for item in items:
            types[kind].model_validate(item)
            assert set(item) <= set(types[kind].model_fields), (kind, set(item) - set(types[kind].model_fields))


def test_train_eval_chat_jobs_end_to_end(standin: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture,
                                        caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "outputs"
    printed: list[str] = []

    def output() -> str:
        got = capsys.readouterr()
        printed.extend([got.out, got.err])
        return got.out + "\x00" + got.err

    caplog.set_level("DEBUG")
    assert main(["train", *args(out, "hparams.epochs=2", "backend.suffix=support-bot")]) == 0
    run_dir = only_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert not (run_dir / "RUNNING").exists() and not (run_dir / "FAILED").exists()
    assert summary["fine_tuned_model"].startswith("ft:gpt-4o-mini-2024-07-18:") and "support-bot" in summary[
        "fine_tuned_model"]
    assert summary["trained_tokens"] > 0 and summary["tokens"] == summary["trained_tokens"]
    assert summary["checkpoints"] and summary["checkpoints"][-1]["step"] == summary["steps"]
    job = json.loads((run_dir / "job.json").read_text())
    hp = job["request"]["method"]["supervised"]["hyperparameters"]
    assert hp == {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"}
    assert job["request"]["suffix"] == "support-bot" and job["request"]["seed"] == 42
    # metrics.jsonl from the result file: every step, the train loss goes down
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [r["step"] for r in recs] == list(range(1, summary["steps"] + 1))
    assert recs[-1]["loss"] < recs[0]["loss"] and summary["last_loss"] < summary["first_loss"]
    assert any("eval_loss" in r for r in recs) and all("token_accuracy" in r for r in recs)
    # the wire calls of one run, in order
    calls = [(m, p) for m, p, _ in standin.requests]
    assert calls[:3] == [("POST", "/files"), ("POST", "/files"), ("POST", "/fine_tuning/jobs")]
    assert standin.count("POST", "/fine_tuning/jobs") == 1 and len(standin.jobs) == 1
    assert calls[-2][1].endswith("/content") and calls[-1][1].endswith("/checkpoints")
    output()

    # a decoding setting OpenAI cannot honour is refused, not dropped
    completions = standin.count("POST", "/chat/completions")
    assert main(["eval", f"run={run_dir}", "eval.max_samples=4", "eval.repetition_penalty=1.2"]) == 2
    assert "eval.repetition_penalty=1.2" in output() and standin.count("POST", "/chat/completions") == completions
    assert main(["eval", f"run={run_dir}", "eval.max_samples=4"]) == 0
    results = json.loads((run_dir / "eval.json").read_text())
    assert "loss" not in results["base"] and "not applicable" in results["not_applicable"]["loss"]
    assert results["finetuned"]["chrf"] > results["base"]["chrf"]  # the stand-in's "model" recalls training answers
    assert (run_dir / "report.html").is_file() and "test loss not applicable" in (run_dir / "report.md").read_text()
    models = {json.loads(json.dumps(b))["model"] for k, b in standin.responses if k == "ChatCompletion"}
    assert models == {"gpt-4o-mini-2024-07-18", summary["fine_tuned_model"]}

    assert main(["chat", f"run={run_dir}", "prompt=Đà Lạt có biển không?"]) == 0
    answer = output().split("\x00")[0].strip()
    assert answer and "biển" in answer

    assert main(["merge", f"run={run_dir}"]) == 2
    assert "merge does not apply" in output()

    assert main(["jobs", f"output_root={out}"]) == 0
    listing = output()
    assert job["job_id"] in listing and "succeeded" in listing and summary["fine_tuned_model"] in listing

    assert_sdk_shapes(standin)
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), f"the API key leaked into {path}"
    output()
    assert KEY not in "".join(printed) and KEY not in caplog.text  # nor in anything printed or logged


def test_missing_key_is_refused_before_a_run_directory(standin: StandIn, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    out = tmp_path / "outputs"
    assert main(["train", *args(out)]) == 2
    assert "export OPENAI_API_KEY" in capsys.readouterr().err
    assert not out.exists() and standin.requests == []
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert main(["train", *args(out, f"backend.key_file={key_file}")]) == 0


def test_failed_job_records_error_and_failed_marker(standin: StandIn, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    standin.fail_job = ("invalid_training_file", "The file contains 3 examples with too many tokens.")
    out = tmp_path / "outputs"
    assert main(["train", *args(out)]) == 2
    run_dir = only_run(out)
    err = capsys.readouterr().err
    assert "invalid_training_file" in err and "too many tokens" in err
    assert "invalid_training_file" in (run_dir / "FAILED").read_text()
    assert not (run_dir / "summary.json").exists()
    job = json.loads((run_dir / "job.json").read_text())
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_training_file"
    assert main(["eval", f"run={run_dir}"]) == 2  # no fine-tuned model to evaluate


def test_429_with_retry_after_then_success(standin: StandIn, tmp_path: Path) -> None:
    standin.faults = [Fault("POST", "/fine_tuning/jobs", 429, retry_after=1.0),
                      Fault("GET", r"/fine_tuning/jobs/[^/]+", 429, times=2, retry_after=0.2)]
    out = tmp_path / "outputs"
    assert main(["train", *args(out)]) == 0
    t_first, t_retry = standin.times("POST", "/fine_tuning/jobs")
    assert t_retry - t_first >= 1.0  # the SDK waited as Retry-After said
    assert len(standin.jobs) == 1
    assert (only_run(out) / "summary.json").is_file()


def test_5xx_and_dropped_connections_are_retried(standin: StandIn, tmp_path: Path) -> None:
    standin.faults = [Fault("POST", "/files", 0),  # the connection drops, no answer
                      Fault("GET", r"/fine_tuning/jobs/[^/]+", 500, times=2),
                      Fault("GET", r"/fine_tuning/jobs/[^/]+/events", 503)]
    out = tmp_path / "outputs"
    assert main(["train", *args(out)]) == 0
    assert len(standin.files) == 2 + 1  # train + val uploads, the result file: the dropped upload was not doubled
    assert len(standin.jobs) == 1
    assert json.loads((only_run(out) / "summary.json").read_text())["fine_tuned_model"]


def test_retries_exhausted_leave_the_job_running_and_reattach(standin: StandIn, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "outputs"
    standin.faults = [Fault("GET", r"/fine_tuning/jobs/[^/]+", 500, times=10)]
    assert main(["train", *args(out, "backend.max_retries=1")]) == 2
    run_dir = only_run(out)
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "keeps running" in err and f"run_dir={run_dir}" in err
    standin.faults = []
    assert main(["train", *args(out, f"run_dir={run_dir}")]) == 0
    assert len(standin.jobs) == 1 and (run_dir / "summary.json").is_file() and not (run_dir / "FAILED").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_stopped_follower_reattaches_to_the_same_job(standin: StandIn, tmp_path: Path, sig: int) -> None:
    standin.steps_per_poll = 1  # a long job: the follower is stopped while it polls
    out = tmp_path / "outputs"
    run_dir = out / "openai-gpt4o-mini" / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "train",
                             *args(out, f"run_dir={run_dir}", "backend.poll_interval_s=0.3",
                                   "backend.max_poll_interval_s=0.3")],  # slow enough to be stopped mid-job
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as in a terminal: a suite started in the background (`cmd &` in a script)
                            # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = standin.jobs and next(iter(standin.jobs.values()))
            if job and job.step >= 2:
                break
            assert proc.poll() is None, "the follower ended before it was killed"
            time.sleep(0.1)
        proc.send_signal(sig)
    finally:
        _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "keeps running on OpenAI's servers" in err and f"run_dir={run_dir}" in err
    assert next(iter(standin.jobs.values())).body["status"] == "running"  # stopping the follower left the job alone
    assert json.loads((run_dir / "job.json").read_text())["job_id"]
    assert not (run_dir / "summary.json").exists()
    standin.steps_per_poll = None
    assert main(["train", *args(out, f"run_dir={run_dir}")]) == 0
    assert standin.count("POST", "/fine_tuning/jobs") == 1 and len(standin.jobs) == 1
    assert standin.count("POST", "/files") == 2
    ids = [json.loads(line)["id"] for line in (run_dir / "events.jsonl").open()]
    assert len(ids) == len(set(ids))  # the re-attached follower read only events it had not seen
    assert (run_dir / "summary.json").is_file() and not (run_dir / "RUNNING").exists()


def test_crash_during_create_adopts_the_created_job(standin: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    assert main(["train", *args(out, "backend.follow=false")]) == 0
    run_dir = only_run(out)
    job = json.loads((run_dir / "job.json").read_text())
    assert not (run_dir / "summary.json").exists() and job["status"] == "validating_files"
    # as if the process died after POST /fine_tuning/jobs was sent but before its answer was recorded
    for key in ("job_id", "request"):
        job.pop(key)
    (run_dir / "job.json").write_text(json.dumps(job))
    assert main(["train", *args(out, f"run_dir={run_dir}")]) == 0
    assert len(standin.jobs) == 1 and standin.count("POST", "/fine_tuning/jobs") == 1
    assert (run_dir / "summary.json").is_file()


def test_cancel(standin: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "outputs"
    assert main(["train", *args(out, "backend.follow=false")]) == 0
    run_dir = only_run(out)
    assert main(["cancel", f"run={run_dir}"]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert next(iter(standin.jobs.values())).body["status"] == "cancelled"
    assert main(["train", *args(out, f"run_dir={run_dir}")]) == 2
    assert "was cancelled" in capsys.readouterr().err and (run_dir / "FAILED").is_file()
    assert main(["jobs", f"output_root={out}"]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["cancel", f"run={tmp_path}"]) == 2  # not a hosted run


def test_format_error_is_caught_before_anything_is_uploaded(standin: StandIn, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "outputs"
    assert main(["train", *args(out, "backend.example_token_limits.gpt-4o-mini-2024-07-18=40")]) == 2
    err = capsys.readouterr().err
    assert "O007" in err and "over 40" in err and "train.jsonl:1:" in err and "nothing was uploaded" in err
    assert standin.requests == [] and not out.exists()


def test_cost_above_the_limit_needs_yes(standin: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "outputs"
    assert main(["train", *args(out, "backend.max_cost_usd=0")]) == 2
    assert "above backend.max_cost_usd" in capsys.readouterr().err
    assert standin.requests == [] and not out.exists()
    assert main(["train", *args(out, "backend.max_cost_usd=0"), "--yes"]) == 0


@pytest.mark.parametrize(("extra", "fragments"), [
    (["method=lora"], ["method=lora", "method.r=", "method=full"]),
    (["method=qlora"], ["method.quantization.bits=4"]),
    (["distributed=zero2"], ["distributed=zero2", "DeepSpeed"]),
    (["launcher=slurm"], ["launcher=slurm", "launcher=local"]),
    (["optim.lr=1e-4"], ["optim.lr=0.0001", "learning_rate_multiplier"]),
    (["hparams.max_steps=10"], ["hparams.max_steps=10", "whole epochs"]),
    (["hparams.epochs=1.5"], ["hparams.epochs=1.5", "whole number"]),
    (["backend.learning_rate_multiplier=-1"], ["backend.learning_rate_multiplier=-1", "> 0"]),
    (["hparams.micro_batch_size=8"], ["both set the batch size"]),
    (["+backend.additional_parameters.hyperparams=1"], ["additional_parameters.hyperparams", "training_file"]),
    (["model=tiny-llama"], ["local model"]),
])
def test_settings_without_hosted_meaning_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     extra: list[str], fragments: list[str]) -> None:
    out = tmp_path / "outputs"
    assert main(["plan", *args(out, *extra)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    assert not out.exists()


def test_plan_shows_request_calls_tokens_and_cost_without_torch(tmp_path: Path) -> None:
    code = ("import sys; from tuneforge.cli import main; "
            f"rc = main(['plan', 'recipe=openai-gpt4o-mini', 'output_root={tmp_path}', 'hparams.epochs=2']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH', rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.stdout.strip().endswith("NO_TORCH 0"), proc.stdout[-2000:] + proc.stderr[-2000:]
    calls = (tmp_path / "openai-gpt4o-mini" / "plan" / "openai_calls.txt").read_text()
    assert "POST https://api.openai.com/v1/fine_tuning/jobs" in calls and '"n_epochs": 2' in calls
    check = json.loads((tmp_path / "openai-gpt4o-mini" / "plan" / "openai_data_check.json").read_text())
    assert check["encoding"] == "o200k_base" and check["exact_tokens"]
    assert check["n_epochs"] == 2 and check["usd_per_1m"] == 3.0
    assert check["cost_usd_estimate"] == round(check["splits"]["train"]["tokens"] * 2 / 1e6 * 3.0, 4)
    assert "memory estimate" not in proc.stdout


def test_token_counts_are_tiktokens_o200k() -> None:
    import bpe_openai
    import tiktoken

    from tuneforge.backends.openai_data import encoder_for, example_tokens

    enc = encoder_for("gpt-4o-mini-2024-07-18")
    assert enc.exact and enc.name == "o200k_base"
    text = "Đà Lạt có biển không? Dạ không ạ, biển gần nhất là Nha Trang."
    assert enc.count(text) == len(tiktoken.get_encoding("o200k_base").encode(text))
    assert enc.count(text) == len(bpe_openai.get_encoding("o200k_base").encode(text))  # an independent implementation
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert example_tokens(enc, msgs) == 3 + (3 + enc.count("user") + enc.count("hi")) + (
        3 + enc.count("assistant") + enc.count("hello"))


@pytest.mark.parametrize(("messages", "rule"), [
    ([{"role": "user", "content": "q"}], "O005"),
    ([{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}], "O003"),
    ([{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}], "O006"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0.5}], "O006"),
    ([{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}], "O002"),
    ([{"role": "user", "content": "q", "mood": "x"}, {"role": "assistant", "content": "a"}], "O004"),
    ([], "O001"),
])
def test_openai_format_rules(messages: list, rule: str) -> None:
    from tuneforge.backends.openai_data import message_problems

    assert rule in [r for r, _ in message_problems(messages)]
    ok = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
          {"role": "assistant", "content": "a", "weight": 0}, {"role": "user", "content": "q2"},
          {"role": "assistant", "content": "a2", "weight": 1}]
    assert message_problems(ok) == []


def test_plan_states_openai_shutdown_dates_and_the_open_recipe(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    from datetime import date

    from tuneforge.backends.openai_sunset import sunset_notes
    from tuneforge.config.compose import load_run_config

    assert main(["plan", "recipe=openai-gpt4o-mini", f"output_root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    for fragment in ("no new jobs for anyone after 2027-01-06", "lost access on 2026-05-07", "since 2026-07-02",
                     "tuneforge train recipe=lora-gemma3 dataset=dalat-tourism", "tuneforge serve run=latest",
                     "tuneforge eval endpoint="):
        assert fragment in out, fragment
    run = load_run_config(["recipe=openai-gpt4o-mini", f"output_root={tmp_path}"])
    assert "(33 days from today)" in sunset_notes(run, date(2026, 12, 4))[0]
    assert "OpenAI will refuse this job" in sunset_notes(run, date(2027, 1, 7))[0]
    assert main(["plan", "recipe=lora-tiny", f"output_root={tmp_path}"]) == 0
    assert "2027-01-06" not in capsys.readouterr().out  # only hosted OpenAI recipes
