"""A/B in front of users: `tuneforge serve serve.ab.base=true` splits requests between the run and its base by the
declared share (the same id or user always lands on the same arm), appends which arm answered to
<run>/ab/log.jsonl, takes ratings on POST /v1/feedback, and `tuneforge ab report` summarises the log per arm."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="transformers' server needs the serving extra (fastapi, uvicorn)")

import openai  # noqa: E402

from tests.serve.server import start_server  # noqa: E402
from tuneforge.cli import main  # noqa: E402

KEY = "tf-ab-test-key-91c2e7"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    root = tmp_path_factory.mktemp("ab-run")
    run = load_run_config(["recipe=lora-tiny", "dataset=sample-chat", "hparams.max_steps=3", "eval.max_new_tokens=8",
                           f"output_root={root / 'outputs'}"])
    return Path(train(run, quiet=True)["run_dir"])


def test_ab_splits_records_takes_ratings_and_reports(tiny_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    server = start_server(tiny_run, tmp_path / "serve.log", "serve.ab.base=true", "serve.ab.share=0.5",
                          "serve.ab.seed=7", env={"TUNEFORGE_SERVE_API_KEY": KEY})
    model = f"{tiny_run.parent.name}-{tiny_run.name}"
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data] == [model]  # one model id; the arms are behind it
        answered = {}
        for i in range(12):
            resp = client.chat.completions.create(model=model, max_tokens=6, extra_headers={"X-Request-ID": f"q{i}"},
                                                  messages=[{"role": "user", "content": f"Đà Lạt có gì vui? ({i})"}])
            assert resp.id == f"q{i}"
            answered[resp.id] = resp.model.removesuffix("@main")  # transformers' server adds the revision
        stream = client.chat.completions.create(model=model, max_tokens=4, stream=True, user="alice",
                                                messages=[{"role": "user", "content": "Hồ Xuân Hương ở đâu?"}])
        streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        again = client.chat.completions.create(model=model, max_tokens=4, user="alice",
                                               messages=[{"role": "user", "content": "Chợ đêm mấy giờ mở?"}])
        print("SDK answer:", again.model_dump_json(include={"id", "model", "choices"}))
        log = [json.loads(line) for line in (tiny_run / "ab" / "log.jsonl").read_text().splitlines()]
        start, answers = log[0], [r for r in log if r["event"] == "answer"]
        assert start["event"] == "start" and start["share"] == 0.5 and start["seed"] == 7
        assert start["arms"]["b"] == {"run": str(tiny_run), "model": f"{model}-base", "base": True}
        arm_of = {r["id"]: r["arm"] for r in answers}
        # the response names the model of the arm that answered, and the log agrees
        assert all(answered[i] == (model if arm_of[i] == "a" else f"{model}-base") for i in answered)
        assert {arm_of[f"q{i}"] for i in range(12)} == {"a", "b"}  # both arms answer at share 0.5
        alice = [r for r in answers if r["prompt"] in ("Hồ Xuân Hương ở đâu?", "Chợ đêm mấy giờ mở?")]
        assert len(alice) == 2 and alice[0]["arm"] == alice[1]["arm"]  # one user, one arm
        assert alice[0]["answer"] == streamed and alice[0]["stream"] and alice[0]["complete"]
        assert alice[1]["id"] == again.id and alice[1]["answer"] == again.choices[0].message.content

        url, auth = f"{server.base_url}/feedback", {"Authorization": f"Bearer {KEY}"}
        for rid, arm in arm_of.items():  # arm A's answers rated 5, arm B's 1; q0 rated twice: the last counts
            assert httpx.post(url, headers=auth, json={"id": rid, "rating": 5 if arm == "a" else 1}).status_code == 200
        assert httpx.post(url, headers=auth, json={"id": "q0", "rating": 5 if arm_of["q0"] == "a" else 1}).json() == {
            "object": "feedback", "id": "q0", "rating": 5 if arm_of["q0"] == "a" else 1}
        assert httpx.post(url, headers=auth, json={"id": "nope", "rating": 3}).status_code == 404
        bad = httpx.post(url, headers=auth, json={"id": "q1", "rating": "great"})
        assert bad.status_code == 400 and "must be a number" in bad.json()["error"]["message"]
        assert httpx.post(url, json={"id": "q1", "rating": 3}).status_code == 401  # the API key guards it too
        # a request id names one answer
        with pytest.raises(openai.BadRequestError, match="answered before"):
            client.chat.completions.create(model=model, max_tokens=2, extra_headers={"X-Request-ID": "q3"},
                                           messages=[{"role": "user", "content": "hi"}])
    finally:
        assert server.stop() == 0
    text = (tiny_run / "ab" / "log.jsonl").read_text()
    assert KEY not in text and "authorization" not in text.lower()  # no key, no header in the log

    capsys.readouterr()
    assert main(["ab", "report", f"run={tiny_run}"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tiny_run / "ab" / "report.json").read_text())
    n_a = sum(1 for a in arm_of.values() if a == "a")
    assert report["requests"] == 14 and report["declared_share_b"] == [0.5]
    a, b = report["arms"]["a"], report["arms"]["b"]
    assert (a["requests"], b["requests"]) == (n_a, 14 - n_a) and a["share"] == pytest.approx(n_a / 14)
    assert a["ratings"] == {"count": n_a, "mean": 5.0} and b["ratings"] == {"count": 14 - n_a, "mean": 1.0}
    assert a["models"] == [model] and b["models"] == [f"{model}-base"]
    # the answer checks ran on every answer: a random-init tiny model writes nothing usable
    assert a["usable_rate"] == 0.0 and sum(a["reason_counts"].values()) >= n_a
    assert f"{model}-base" in printed and "5.00" in printed and "1.00" in printed
    print(printed)


@pytest.mark.parametrize(("args", "message"), [
    (["serve.ab.share=1.5"], "serve.ab.share=1.5 is not a share of requests (0..1)"),
    (["serve.ab.base=true", "serve.ab.run_b=/tmp"], "both name arm B"),
    (["serve.ab.shar=0.2"], "did you mean 'serve.ab.share'"),
])
def test_bad_ab_options_fail_with_one_line(tiny_run: Path, args: list[str], message: str,
                                           capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", f"run={tiny_run}", *args]) == 2
    assert message in capsys.readouterr().err


def test_plan_names_the_second_arm(tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", f"run={tiny_run}", "serve.ab.base=true", "serve.ab.share=0.25", "--plan"]) == 0
    assert "arm B the base model answers 25% of requests" in capsys.readouterr().out


def test_ab_report_without_a_log_says_how_to_make_one(tmp_path: Path, tiny_run: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "merged", "serve", "ab"))
    assert main(["ab", "report", f"run={run}"]) == 2
    assert "serve.ab.base=true" in capsys.readouterr().err


def test_arms_follow_the_declared_share() -> None:
    from tuneforge.serve.ab import arm_for

    arms = [arm_for(f"req-{i}", 0.2, 0) for i in range(5000)]
    assert arms.count("b") / len(arms) == pytest.approx(0.2, abs=0.02)
    assert arms == [arm_for(f"req-{i}", 0.2, 0) for i in range(5000)]  # deterministic
    assert {arm_for(f"req-{i}", 0.0, 0) for i in range(200)} == {"a"}
    assert {arm_for(f"req-{i}", 1.0, 0) for i in range(200)} == {"b"}


def test_ab_between_two_runs(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """serve.ab.run_b=<dir>: arm B is another run's model (its own adapter, the same decoding); the log names that
    run, the response names its model, and the report keeps the two runs apart."""
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    run_b = Path(train(load_run_config(["recipe=lora-tiny", "dataset=sample-chat", "hparams.max_steps=2",
                                        "hparams.seed=11", "name=other", f"output_root={tmp_path / 'outputs'}"]),
                       quiet=True)["run_dir"])
    model, model_b = f"{tiny_run.parent.name}-{tiny_run.name}", f"{run_b.parent.name}-{run_b.name}"
    assert model != model_b
    served = tmp_path / "a"
    import shutil

    shutil.copytree(tiny_run, served, ignore=shutil.ignore_patterns("serve", "ab"))
    model = f"{served.parent.name}-{served.name}"
    server = start_server(served, tmp_path / "serve.log", f"serve.ab.run_b={run_b}", "serve.ab.share=0.5",
                          "serve.ab.seed=3")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)
        answered = {}
        for i in range(10):
            resp = client.chat.completions.create(model=model, max_tokens=4, extra_headers={"X-Request-ID": f"r{i}"},
                                                  messages=[{"role": "user", "content": f"Chợ Đà Lạt ở đâu? ({i})"}])
            answered[resp.id] = resp.model.removesuffix("@main")
    finally:
        assert server.stop() == 0
    log = [json.loads(line) for line in (served / "ab" / "log.jsonl").read_text().splitlines()]
    assert log[0]["arms"]["b"]["run"] == str(run_b) and log[0]["arms"]["b"]["base"] is False
    arm_of = {r["id"]: r["arm"] for r in log if r["event"] == "answer"}
    assert set(arm_of.values()) == {"a", "b"}
    assert all(answered[i] == (model if arm_of[i] == "a" else log[0]["arms"]["b"]["model"]) for i in answered)
    assert log[0]["arms"]["b"]["model"] != model
    capsys.readouterr()
    assert main(["ab", "report", f"run={served}"]) == 0
    report = json.loads((served / "ab" / "report.json").read_text())
    assert report["arms"]["a"]["requests"] + report["arms"]["b"]["requests"] == 10
    assert report["arms"]["b"]["models"] == [log[0]["arms"]["b"]["model"]]
