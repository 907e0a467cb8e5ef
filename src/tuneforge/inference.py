"""``tuneforge chat run=<run_dir> [prompt="..."]``: talk to a fine-tuned run.

One-shot with ``prompt=`` (prints the answer, exit), interactive otherwise (``/help`` lists the commands,
``/reset`` clears the history, ``/exit`` or Ctrl-D quits; a line starting with ``/`` never reaches the model).
Loads ``merged/`` when the run has one (``merged=false`` forces the adapter on
its base; ``merged=true`` insists on merged/), else the adapter on its base (4/8-bit for QLoRA, as trained),
or ``model/`` for a full fine-tune. The conversation goes through the run's chat template with the run's
system prompt: ``dataset.system_prompt``, else the system turn the training data shares, or ``system=``.
Tokens are streamed as they are generated; decoding is the run's ``eval`` settings (greedy unless
``eval.do_sample=true``; ``eval.temperature``, ``eval.top_p``, ``eval.max_new_tokens``).
"""

from __future__ import annotations

import collections
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tuneforge.errors import RunArtifactError
from tuneforge.evaluation.artifacts import RunArtifacts
from tuneforge.schema.evaluation import EvalConfig


@dataclass
class ChatModel:
    model: Any
    tokenizer: Any
    source: str  # what was loaded, for the banner
    system_prompt: str | None
    decoding: EvalConfig
    max_prompt_tokens: int
    history: list[dict] = field(default_factory=list)
    random_init: bool = False  # the base is model.tiny: built locally with random weights

    def messages(self, user: str) -> list[dict]:
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*head, *self.history, {"role": "user", "content": user}]


def training_system_prompt(art: RunArtifacts) -> str | None:
    """``dataset.system_prompt``, else the system turn that most training conversations open with."""
    if art.run.dataset.system_prompt:
        return art.run.dataset.system_prompt
    from tuneforge.data.prepare import prepare_splits

    counts: collections.Counter[str] = collections.Counter()
    total = 0
    with Path(prepare_splits(art.run.dataset).train).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                msgs = json.loads(line)["messages"]
                total += 1
                if msgs and msgs[0].get("role") == "system":
                    counts[msgs[0]["content"]] += 1
    if not counts:
        return None
    text, n = counts.most_common(1)[0]
    return text if n * 2 > total else None


def load_chat_model(run_dir: Path | str, *, merged: bool | None = None, decoding: EvalConfig | None = None,
                    system_prompt: str | None = None, base: str | None = None) -> ChatModel:
    from tuneforge.evaluation.artifacts import load_finetuned, load_run_tokenizer, open_run

    art = open_run(run_dir, base)
    has_merged = (art.merged / "config.json").is_file()
    if merged and not has_merged:
        raise RunArtifactError(f"merged=true but {art.merged} does not exist; run `tuneforge merge "
                               f"run={art.run_dir}` first, or leave merged unset to use {art.weights.name}/")
    use_merged = has_merged if merged is None else merged
    model, source = load_finetuned(art, prefer_merged=use_merged)
    tokenizer = load_run_tokenizer(art, art.merged if use_merged else None)
    cfg = decoding or art.run.eval
    return ChatModel(model, tokenizer, source, system_prompt or training_system_prompt(art), cfg,
                     max_prompt_tokens=max(16, art.run.hparams.seq_len - cfg.max_new_tokens),
                     random_init=art.run.model.tiny is not None and not base)


def _stream_writer(tokenizer: Any, out: TextIO | None, parts: list[str]) -> Any:
    from transformers import TextStreamer

    class CollectingStreamer(TextStreamer):
        """Writes each decoded piece to ``out`` as it arrives and keeps it for the return value."""

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            parts.append(text)
            if out is not None:
                out.write(text)
                out.flush()

    return CollectingStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                              clean_up_tokenization_spaces=False)


def reply(chat: ChatModel, user: str, out: TextIO | None = None, remember: bool = True) -> str:
    """Generate the assistant's answer to ``user`` (streamed to ``out``) and add the turn to the history."""
    import torch

    from tuneforge.evaluation.runner import generation_config, prompt_text

    tok = chat.tokenizer
    text = prompt_text(tok, chat.messages(user))
    side = tok.truncation_side
    tok.truncation_side = "left"  # a long history loses its oldest turns, not the question
    try:
        enc = tok(text, add_special_tokens=False, truncation=True, max_length=chat.max_prompt_tokens,
                  return_tensors="pt")
    finally:
        tok.truncation_side = side
    parts: list[str] = []
    dev = next(chat.model.parameters()).device
    with torch.no_grad():
        chat.model.generate(**enc.to(dev), generation_config=generation_config(tok, chat.decoding),
                            streamer=_stream_writer(tok, out, parts))
    answer = "".join(parts).strip()
    if remember:
        chat.history += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return answer


def banner(chat: ChatModel) -> str:
    d = chat.decoding
    mode = f"sampling (temperature {d.temperature}, top_p {d.top_p})" if d.do_sample else "greedy"
    system = (chat.system_prompt[:80] + "…") if chat.system_prompt and len(chat.system_prompt) > 80 else (
        chat.system_prompt or "none")
    text = (f"tuneforge chat: {chat.source}\n  decoding: {mode}, max {d.max_new_tokens} new tokens\n"
            f"  system prompt: {system}\n  /help lists the commands, /exit or Ctrl-D quits")
    if chat.random_init:
        text += f"\n  {RANDOM_INIT_NOTE}"
    return text


RANDOM_INIT_NOTE = ("note: this run's base is a random-init tiny model (model.tiny), so its answers are noise "
                    "by design, not a bug")
COMMANDS_HELP = {
    "/help": "show these commands",
    "/reset": "clear the conversation history (the system prompt stays)",
    "/history": "show the conversation so far",
    "/system": "show the system prompt",
    "/exit": "quit (also /quit, Ctrl-D)",
}


def help_text() -> str:
    return "\n".join(f"  {k:<9} {v}" for k, v in COMMANDS_HELP.items())


def interactive(chat: ChatModel, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    print(banner(chat), file=stdout)
    while True:
        stdout.write("\nyou> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            return
        user = line.strip()
        if not user:
            continue
        if user in ("/exit", "/quit"):
            return
        if user == "/reset":
            chat.history.clear()
            print("(history cleared)", file=stdout)
            continue
        if user in ("/help", "/?", "/commands"):
            print(help_text(), file=stdout)
            continue
        if user == "/history":
            for turn in chat.history:
                print(f"{turn['role']}> {turn['content']}", file=stdout)
            if not chat.history:
                print("(no history yet)", file=stdout)
            continue
        if user == "/system":
            print(chat.system_prompt or "(no system prompt)", file=stdout)
            continue
        if user.startswith("/") and " " not in user:  # a mistyped command is not a prompt for the model
            print(f"unknown command {user}; commands:\n{help_text()}", file=stdout)
            continue
        stdout.write("assistant> ")
        reply(chat, user, out=stdout)
        stdout.write("\n")


def cmd_chat(args: list[str]) -> int:
    """tuneforge chat run=<run_dir> [prompt="..."] [system="..."] [merged=true|false] [eval.<key>=...]"""
    from tuneforge.evaluation.run_args import eval_config_with, parse_run_args

    parsed = parse_run_args("chat", args, {
        "prompt": "one-shot: answer this and exit",
        "system": "system prompt (default: the run's)",
        "merged": "true: use merged/, false: adapter on its base (default: merged/ if present)",
        "rag": "true: put the top eval.retriever.k passages of dataset.passages into the prompt (with prompt=); "
               "on too when eval.retriever.* is given",
    })
    passages: list[str] | None = None  # with retrieval: the answer's values are checked against them
    if parsed.flag("rag", any(o.startswith("retriever.") for o in parsed.eval_overrides)):
        from tuneforge.evaluation.rag import retrieval_prompt

        parsed, passages = retrieval_prompt(parsed)  # prompt= now holds the passages; they are printed to stderr
    from tuneforge.evaluation.hosted import hosted_chat, hosted_run

    if hosted_run(parsed.run_dir):  # the fine-tuned model through chat completions
        from tuneforge.rundir import read_config

        return hosted_chat(parsed.run_dir, parsed.options.get("prompt"), system_prompt=parsed.options.get("system"),
                           decoding=eval_config_with(read_config(parsed.run_dir).eval, parsed.eval_overrides),
                           passages=passages)
    from tuneforge.evaluation.artifacts import open_run

    art = open_run(parsed.run_dir)
    chat = load_chat_model(art.run_dir, merged=parsed.flag("merged", None),  # type: ignore[arg-type]
                           decoding=eval_config_with(art.run.eval, parsed.eval_overrides),
                           system_prompt=parsed.options.get("system"), base=parsed.options.get("base"))
    if "prompt" in parsed.options:
        print(f"[{chat.source}]", file=sys.stderr)
        if chat.random_init:
            print(RANDOM_INIT_NOTE, file=sys.stderr)
        answer = reply(chat, parsed.options["prompt"], out=sys.stdout, remember=False)
        sys.stdout.write("\n")
        if passages is not None:
            from tuneforge.evaluation.rag import value_check

            print(value_check(answer, passages), file=sys.stderr)
        return 0
    interactive(chat)
    return 0
