"""OpenAI DPO through the project's stand-in (which speaks the real wire format and checks the DPO job and
file): the request carries method type dpo with beta, the uploaded file is OpenAI's DPO format, and the
stand-in refuses a DPO method with a supervised file, and a bad beta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import serving_standin
from tuneforge.backends.openai_dpo import job_problem
from tuneforge.cli import main
from tuneforge.openai_standin import StandIn

KEY = "sk-test-SECRET-dpo-5f3a9c2e"
FAST = ["backend.poll_interval_s=0.01", "backend.max_poll_interval_s=0.05"]


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch):
    with serving_standin(monkeypatch, KEY) as s:
        yield s


def test_dpo_job_and_file_reach_the_standin(standin: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "outputs"
    assert main(["train", "recipe=openai-dpo-gpt4o-mini", f"output_root={out}", "--yes", *FAST]) == 0
    (run_dir,) = [p for p in (out / "openai-dpo-gpt4o-mini").iterdir() if p.name != "plan"]
    (job,) = standin.jobs.values()
    method = job.body["method"]
    assert method["type"] == "dpo" and method["dpo"]["hyperparameters"]["beta"] == pytest.approx(0.1)
    request = json.loads((run_dir / "job.json").read_text())["request"]
    assert request["method"]["type"] == "dpo" and request["method"]["dpo"]["hyperparameters"]["beta"] == 0.1
    uploaded = [json.loads(x) for x in next(c for c in standin.contents.values()
                                              if b"preferred_output" in c).decode().splitlines()]
    assert set(uploaded[0]) == {"input", "preferred_output", "non_preferred_output"}
    assert uploaded[0]["input"]["messages"][-1]["role"] == "user"
    assert KEY not in capsys.readouterr().out


def test_standin_checks_the_method_against_the_file() -> None:
    sft = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    dpo = [{"input": {"messages": [{"role": "user", "content": "q"}]},
            "preferred_output": [{"role": "assistant", "content": "a"}],
            "non_preferred_output": [{"role": "assistant", "content": "b"}]}]
    assert job_problem({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}, dpo) is None
    assert "line 1" in job_problem({"type": "dpo"}, sft)
    assert "a supervised job needs 'messages'" in job_problem({"type": "supervised"}, dpo)
    assert "beta=5" in job_problem({"type": "dpo", "dpo": {"hyperparameters": {"beta": 5}}}, dpo)
    same = [dict(dpo[0], non_preferred_output=dpo[0]["preferred_output"])]
    assert "O023" in job_problem({"type": "dpo"}, same)


@pytest.mark.parametrize("extra, message", [
    (["objective.loss_type=ipo"], "OpenAI's DPO job has one loss"),
    (["objective=orpo"], "objective=orpo is not trained by backend=openai"),
])
def test_openai_refuses_what_its_dpo_job_cannot_do(extra: list[str], message: str) -> None:
    from tuneforge.config.compose import load_run_config
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_run_config(["recipe=openai-dpo-gpt4o-mini", *extra])
