"""`tuneforge chat`: one-shot and interactive modes on a tiny run, through the run's chat template and
system prompt, streamed; the merged model answers like base + adapter under greedy decoding."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.evaluation.shared_run import SharedRun, trained_lora_run
from tuneforge.cli import main
from tuneforge.inference import interactive, load_chat_model, reply
from tuneforge.schema.evaluation import EvalConfig

GREEDY = EvalConfig(max_new_tokens=12, do_sample=False)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return trained_lora_run(tmp_path_factory)


def test_chat_one_shot_prints_an_answer(lora_run: SharedRun, capsys: pytest.CaptureFixture) -> None:
    rc = main(["chat", f"run={lora_run.run_dir}", "prompt=Đà Lạt ở tỉnh nào?", "eval.max_new_tokens=12",
               "merged=false"])
    assert rc == 0
    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "adapter" in captured.err and "on the base" in captured.err


def test_chat_uses_the_runs_template_and_system_prompt(lora_run: SharedRun) -> None:
    from tuneforge.evaluation.runner import prompt_text

    chat = load_chat_model(lora_run.run_dir, merged=False, decoding=GREEDY)
    # sample-chat sets no dataset.system_prompt: the system turn every training conversation shares is used
    assert chat.system_prompt and chat.system_prompt.startswith("Bạn là trợ lý du lịch Đà Lạt")
    text = prompt_text(chat.tokenizer, chat.messages("Xin chào"))
    assert text.startswith(f"<|im_start|>system\n{chat.system_prompt}<|im_end|>\n<|im_start|>user\nXin chào")
    assert text.endswith("<|im_start|>assistant\n")


def test_reply_streams_the_tokens_it_returns(lora_run: SharedRun) -> None:
    class Recorder(io.StringIO):
        writes = 0

        def write(self, s: str) -> int:
            self.writes += 1
            return super().write(s)

    chat = load_chat_model(lora_run.run_dir, merged=False, decoding=GREEDY)
    out = Recorder()
    answer = reply(chat, "Giá vé cáp treo?", out=out)
    assert answer and out.getvalue().strip() == answer
    assert out.writes >= 1
    assert chat.history[-1] == {"role": "assistant", "content": answer}


def test_interactive_mode(lora_run: SharedRun) -> None:
    chat = load_chat_model(lora_run.run_dir, merged=False, decoding=GREEDY)
    out = io.StringIO()
    interactive(chat, stdin=io.StringIO("Xin chào\n/reset\nHồ Xuân Hương ở đâu?\n/exit\n"), stdout=out)
    text = out.getvalue()
    assert text.count("assistant> ") == 2 and "(history cleared)" in text
    assert len(chat.history) == 2  # only the turn after /reset


def test_interactive_commands_never_reach_the_model(lora_run: SharedRun) -> None:
    from tuneforge.inference import RANDOM_INIT_NOTE, banner

    chat = load_chat_model(lora_run.run_dir, merged=False, decoding=GREEDY)
    out = io.StringIO()
    interactive(chat, stdin=io.StringIO("/help\n/system\n/hist\n/exit\n"), stdout=out)
    text = out.getvalue()
    assert "assistant> " not in text and chat.history == []  # nothing was sent as a prompt
    assert "/reset" in text and "/history" in text  # /help listed the commands
    assert chat.system_prompt in text  # /system
    assert "unknown command /hist" in text
    # the tiny model is random-init: the banner says so in one line, so noise is not taken for a bug
    assert chat.random_init and RANDOM_INIT_NOTE in banner(chat)
    assert sum(RANDOM_INIT_NOTE in ln for ln in banner(chat).splitlines()) == 1


def test_merged_model_answers_like_the_adapter(lora_run: SharedRun, tmp_path: Path) -> None:
    from tuneforge.merge import merge_run

    run_dir = lora_run.copy(tmp_path / "run")
    merge_run(run_dir, quiet=True)
    merged = load_chat_model(run_dir, decoding=GREEDY)  # merged/ is picked up by default
    adapter = load_chat_model(run_dir, merged=False, decoding=GREEDY)
    assert merged.source.startswith("merged model") and adapter.source.startswith("adapter")
    prompt = "Cho mình hỏi: giá thuê xe máy ở Đà Lạt?"
    assert reply(merged, prompt) == reply(adapter, prompt)


def test_chat_merged_true_without_merged_dir_is_refused(lora_run: SharedRun,
                                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["chat", f"run={lora_run.run_dir}", "prompt=hi", "merged=true"]) == 2
    assert "run `tuneforge merge" in capsys.readouterr().err
