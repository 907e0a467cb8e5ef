"""The trained default run (lora-gemma3), served: the official openai SDK gets the same answer as `tuneforge chat`
gives locally (greedy), in Vietnamese. Slow: merges and serves Gemma 3 270M on the CPU (~2 min)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="transformers' server needs the serving extra (fastapi, uvicorn)")


@pytest.mark.slow
def test_default_run_served_answers_like_local_chat(tmp_path: Path) -> None:
    import openai

    from tests.serve.server import start_server
    from tuneforge.errors import RunArtifactError
    from tuneforge.inference import load_chat_model, reply
    from tuneforge.runs import resolve_run

    try:
        trained = resolve_run("lora-gemma3")
    except RunArtifactError:
        pytest.skip("no complete lora-gemma3 run: `make train` first")
    run = tmp_path / trained.parent.name / trained.name  # a copy: serve writes merged/ and serve/ into the run
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("checkpoints", "merged", "serve", "export"))
    server = start_server(run, tmp_path / "serve.log", "eval.max_new_tokens=48", timeout=900)
    try:
        question = "Tháng mấy đi Đà Lạt thì đẹp nhất?"
        client = openai.OpenAI(base_url=server.base_url, api_key="no-key", max_retries=0, timeout=600)
        model = f"{run.parent.name}-{run.name}"
        assert [m.id for m in client.models.list().data] == [model]
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
        served = answer.choices[0].message.content.strip()
    finally:
        assert server.stop() == 0
    assert served and any(ch in served for ch in "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")
    chat = load_chat_model(run)
    chat.decoding.max_new_tokens = 48
    assert served == reply(chat, question, remember=False)
