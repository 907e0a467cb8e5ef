"""`tuneforge serve`: a real server (transformers' OpenAI-compatible app) on 127.0.0.1 answering the official
`openai` SDK with the run's model, chat template and decoding; bad input gets a 4xx and the server keeps
serving; an API key from the environment is enforced and never written; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="transformers' server needs the serving extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="transformers' server needs the serving extra (fastapi, uvicorn)")

import openai  # noqa: E402

from tests.serve.server import Server, start_server  # noqa: E402
from tuneforge.cli import main  # noqa: E402

KEY = "tf-serve-test-key-5b8e1d"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    root = tmp_path_factory.mktemp("serve-run")
    run = load_run_config(["recipe=lora-tiny", "dataset=sample-chat", "hparams.max_steps=3", "eval.max_new_tokens=12",
                           f"output_root={root / 'outputs'}"])
    return Path(train(run, quiet=True)["run_dir"])


@pytest.fixture(scope="module")
def server(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Server:
    srv = start_server(tiny_run, tmp_path_factory.mktemp("serve-log") / "serve.log",
                       env={"TUNEFORGE_SERVE_API_KEY": KEY})
    yield srv
    srv.stop()


def client(server: Server, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


def model_id(run_dir: Path) -> str:
    return f"{run_dir.parent.name}-{run_dir.name}"


def test_models_lists_the_run_and_chat_matches_local_greedy_generation(server: Server, tiny_run: Path) -> None:
    from tuneforge.inference import load_chat_model, reply

    c = client(server)
    assert [m.id for m in c.models.list().data] == [model_id(tiny_run)]
    question = "Where should I stay?"
    resp = c.chat.completions.create(model=model_id(tiny_run), messages=[{"role": "user", "content": question}])
    served = resp.choices[0].message.content
    # no max_tokens and no system turn in the request: the run's eval.max_new_tokens (12) and system prompt
    assert resp.usage.completion_tokens <= 12
    local = reply(load_chat_model(tiny_run), question, remember=False)  # same merged model, template, decoding
    assert served.strip() == local and served.strip()
    streamed = c.chat.completions.create(model=model_id(tiny_run), stream=True, max_completion_tokens=5,
                                         messages=[{"role": "user", "content": question}])
    text = "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices)
    assert text and local.startswith(text.strip()[:3])
    assert f"serve[{tiny_run.parent.name}/{tiny_run.name}] POST /v1/chat/completions 200" in server.output()


def test_api_key_is_required_and_never_written(server: Server, tiny_run: Path) -> None:
    with pytest.raises(openai.AuthenticationError, match="API key"):
        client(server, "wrong").models.list()
    assert httpx.get(f"{server.base_url}/models").status_code == 401
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200  # health stays open
    assert KEY not in server.output()
    for f in tiny_run.rglob("*"):
        if f.is_file() and not f.is_symlink() and f.stat().st_size < 5_000_000:
            assert KEY.encode() not in f.read_bytes(), f


def test_bad_input_gets_a_4xx_and_the_server_keeps_serving(server: Server, tiny_run: Path) -> None:
    c, url = client(server), f"{server.base_url}/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    with pytest.raises(openai.BadRequestError, match=f"pinned to '{model_id(tiny_run)}'"):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="context of"):
        c.chat.completions.create(model=model_id(tiny_run), messages=[{"role": "user", "content": "word " * 5000}])
    bad = httpx.post(url, content=b'{"model": ', headers={**auth, "content-type": "application/json"})
    assert bad.status_code == 400 and "invalid request body" in bad.json()["error"]["message"]
    assert httpx.post(url, json={"model": model_id(tiny_run)}, headers=auth).status_code == 400  # no messages
    # a client that leaves in the middle of a stream
    with httpx.stream("POST", url, headers=auth, json={"model": model_id(tiny_run), "stream": True, "max_tokens": 200,
                                                       "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200
        next(r.iter_lines())
    ok = c.chat.completions.create(model=model_id(tiny_run), max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content is not None and server.proc.poll() is None


def test_sigterm_stops_cleanly(tiny_run: Path, tmp_path: Path) -> None:
    srv = start_server(tiny_run, tmp_path / "serve.log")
    client(srv, "unused").chat.completions.create(model=model_id(tiny_run), max_tokens=2,
                                                  messages=[{"role": "user", "content": "hi"}])
    assert srv.stop(signal.SIGTERM) == 0
    out = srv.output()
    assert f"tuneforge serve: {tiny_run.parent.name}/{tiny_run.name} stopped (SIGTERM)" in out
    assert "Traceback" not in out
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{srv.port}/health")


def test_plan_prints_command_and_memory_and_starts_nothing(tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", f"run={tiny_run}", "serve.port=8123", "--plan"]) == 0
    out = capsys.readouterr().out
    assert f"tuneforge serve run={tiny_run} serve.host=127.0.0.1 serve.port=8123" in out
    assert "memory       ~" in out and "KV cache" in out and "transformers serve" in out


@pytest.mark.parametrize(("arg", "message"), [
    ("serve.device=tpu", "serve.device='tpu' is not one of: auto, cpu, cuda"),
    ("serve.port=0", "serve.port=0 is not a TCP port"),
    ("serve.prot=80", "unknown key 'serve.prot' (did you mean 'serve.port'?)"),
    ("serve.engine=vlm", "serve.engine='vlm' is not one of: auto, transformers, vllm"),
    ("serve.ab.base=true serve.engine=vllm", "use serve.engine=transformers (or auto) for an A/B"),
])
def test_bad_serve_options_fail_with_one_line(tiny_run: Path, arg: str, message: str,
                                              capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", f"run={tiny_run}", *arg.split()]) == 2
    assert message in capsys.readouterr().err


def test_vllm_serves_the_lora_adapter_directly_with_the_key_kept_off_the_command_line(
        tiny_run: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_SERVE_API_KEY", KEY)
    assert main(["serve", f"run={tiny_run}", "serve.engine=vllm", "serve.port=8124", "--plan"]) == 0
    out = capsys.readouterr().out
    runs = next(line for line in out.splitlines() if line.startswith("  runs "))
    mid = model_id(tiny_run)
    assert " serve " in runs and "--host 127.0.0.1 --port 8124" in runs
    assert f"--enable-lora --lora-modules {mid}={tiny_run / 'adapter'} --max-lora-rank 8" in runs
    assert f"--served-model-name {mid}-base" in runs and f"--generation-config {tiny_run / 'serve' / (mid + '-vllm')}" in runs
    assert KEY not in out
    from tuneforge.serve.vllm_engine import vllm_missing

    if vllm_missing():  # here: no CUDA GPU or no vllm; the plan says so and serving refuses, naming the way out
        assert f"NOT AVAILABLE HERE: {vllm_missing()}" in out
        assert main(["serve", f"run={tiny_run}", "serve.engine=vllm"]) == 2
        assert "serve.engine=transformers (or auto) serves on this machine" in capsys.readouterr().err
        assert main(["serve", f"run={tiny_run}", "--plan"]) == 0  # auto falls back to transformers, and says why
        assert f"transformers serve (in-process: transformers.cli.serving), device=auto  [auto: {vllm_missing()}]" \
            in capsys.readouterr().out


def test_a_hosted_run_is_refused(tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    run = tmp_path / "hosted"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "merged", "serve"))
    (run / "job.json").write_text(json.dumps({"job_id": "ftjob-1", "status": "succeeded"}))
    assert main(["serve", f"run={run}"]) == 2
    assert "fine-tuned by OpenAI" in capsys.readouterr().err


def test_eval_over_the_endpoint_scores_the_served_answers(server: Server, tiny_run: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """`tuneforge eval endpoint=...`: the served model's answers (through the hosted eval's request code) equal
    the merged model's own greedy answers to the same test conversations, and are scored by the eval's checks."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.evaluation.runner import generation_config
    from tuneforge.rundir import read_config

    monkeypatch.setenv("TUNEFORGE_SERVE_API_KEY", KEY)
    out = tiny_run.parent / "endpoint.json"
    assert main(["eval", f"endpoint={server.base_url}", f"model={model_id(tiny_run)}", f"run={tiny_run}",
                 "eval.max_samples=3", "eval.max_new_tokens=8", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "usable_rate" in printed and "not applicable over an API" in printed
    record = json.loads(out.read_text())
    assert record["n_examples"] == 3 and {"usable_rate", "chrf", "rouge_l"} <= set(record["endpoint_metrics"])
    cfg = read_config(tiny_run).eval
    cfg.max_new_tokens = 8
    tok = AutoTokenizer.from_pretrained(tiny_run / "merged")
    model = AutoModelForCausalLM.from_pretrained(tiny_run / "merged")
    for ex, sample in zip(load_test_examples(read_config(tiny_run), 3), record["samples"], strict=True):
        ids = tok.apply_chat_template(ex.prompt_messages, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, generation_config=generation_config(tok, cfg))
        local = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        assert sample["answer"] == local and sample["prompt"] == ex.prompt


def test_eval_endpoint_needs_a_model_and_a_url(tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "endpoint=http://127.0.0.1:9/v1", f"run={tiny_run}"]) == 2
    assert "model=" in capsys.readouterr().err
    assert main(["eval", "endpoint=localhost:8000", "model=m", f"run={tiny_run}"]) == 2
    assert "is not an http(s) base URL" in capsys.readouterr().err
