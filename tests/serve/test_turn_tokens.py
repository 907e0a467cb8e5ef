"""Gemma's ``<end_of_turn>`` never reaches an answer. The class of bug: a tokenizer rebuilt from GGUF metadata holds
the turn tokens as plain vocabulary pieces, so ``skip_special_tokens=True`` keeps them and the answer ends in the
literal text ``<end_of_turn>``. A tiny Gemma-like model reproduces it: the tiny tokenizer given plain
``<start_of_turn>`` / ``<end_of_turn>`` tokens, and weights that answer every prompt with two words and then
``<end_of_turn>`` (and would go on writing after it if generation did not stop there). Local chat, the local
eval's cut-off count, ``tuneforge serve`` and the endpoint eval all see the two words and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.schema.evaluation import EvalConfig

pytest.importorskip("fastapi", reason="transformers' server needs the serving extra (fastapi, uvicorn)")


def build_gemma_like(target: Path) -> tuple[Path, list[int]]:
    """A copy of the tiny model whose vocabulary holds Gemma's turn tokens as plain pieces and whose greedy
    answer to any prompt ending in the generation prompt is ``A B <end_of_turn>``. Returns (dir, [A, B])."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.models import build_tiny_model
    from tuneforge.schema.run import TinyModelConfig

    tiny = build_tiny_model(TinyModelConfig())
    tok = AutoTokenizer.from_pretrained(tiny)
    tok.add_tokens(["<start_of_turn>", "<end_of_turn>"], special_tokens=False)  # as the GGUF conversion left them
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    model.resize_token_embeddings(len(tok))
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    newline = tok("<start_of_turn>model\n", add_special_tokens=False)["input_ids"][-1]
    a, b = tok(" Lat Lake", add_special_tokens=False)["input_ids"][:2]
    with torch.no_grad():  # the layers add nothing: each position's logits read its own token's embedding
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.zero_()
        for i, (cur, nxt) in enumerate(((newline, a), (a, b), (b, eot))):  # "\n" -> A -> B -> <end_of_turn>
            emb[cur] = torch.nn.functional.one_hot(torch.tensor(i), emb.shape[1]).float()
            head[nxt] = 5.0 * emb[cur]
        emb[eot] = emb[a]  # after <end_of_turn> the model would write B again: only a stop ends it
    model.generation_config.eos_token_id = tok.eos_token_id  # the GGUF's own eos, not the turn's end
    model.save_pretrained(target)
    tok.save_pretrained(target)
    return target, [a, b]


@pytest.fixture(scope="module")
def gemma_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path, ids = build_gemma_like(tmp_path_factory.mktemp("gemma-like") / "model")
    from transformers import AutoTokenizer

    return path, AutoTokenizer.from_pretrained(path).decode(ids)


def overrides(model_dir: Path, *extra: str) -> list[str]:
    return ["recipe=lora-tiny", f"model.name_or_path={model_dir}", "model.tiny=null", "model.chat_template=gemma",
            "dataset=sample-chat", *extra]


def test_the_bug_is_reproduced_and_the_loaded_tokenizer_drops_turn_tokens(gemma_like: tuple[Path, str]) -> None:
    from transformers import AutoTokenizer

    from tuneforge.config.compose import load_run_config
    from tuneforge.models import load_tokenizer

    path, _ = gemma_like
    raw = AutoTokenizer.from_pretrained(path)
    eot = raw.convert_tokens_to_ids("<end_of_turn>")
    assert raw.decode([eot], skip_special_tokens=True) == "<end_of_turn>"  # the leak, as the files hold it
    tok = load_tokenizer(load_run_config(overrides(path)))
    assert tok.decode([eot], skip_special_tokens=True) == "" and len(tok) == len(raw)
    text = "<start_of_turn>user\nĐà Lạt?<end_of_turn>\n<start_of_turn>model\nHồ Xuân Hương<end_of_turn>\n"
    assert tok(text, add_special_tokens=False)["input_ids"] == raw(text, add_special_tokens=False)["input_ids"]


def test_chat_and_eval_stop_at_end_of_turn_and_never_show_it(gemma_like: tuple[Path, str]) -> None:
    from transformers import AutoModelForCausalLM

    from tuneforge.config.compose import load_run_config
    from tuneforge.evaluation.examples import EvalExample
    from tuneforge.evaluation.runner import generate_answers
    from tuneforge.evaluation.style import score_style
    from tuneforge.inference import ChatModel, reply
    from tuneforge.models import load_tokenizer

    path, words = gemma_like
    run = load_run_config(overrides(path))
    tok, model = load_tokenizer(run), AutoModelForCausalLM.from_pretrained(path).eval()
    cfg = EvalConfig(max_new_tokens=6, do_sample=False)
    chat = ChatModel(model, tok, "gemma-like", None, cfg, max_prompt_tokens=200)
    assert reply(chat, "Đà Lạt có hồ nào?") == words.strip()
    examples = [EvalExample([{"role": "user", "content": q}, {"role": "assistant", "content": words}], words)
                for q in ("Hồ nào?", "Đà Lạt có biển không?")]
    got = generate_answers(model, tok, examples, cfg, 256, 0, "gemma-like")
    assert got == [(words.strip(), 2)] * 2  # two words, then the turn's end: not part of the answer
    # three tokens allowed: the answer ended on its own; two: it was cut before its end
    for limit, cut in ((3, []), (2, [0, 1])):
        n = [n for _, n in generate_answers(model, tok, examples, EvalConfig(max_new_tokens=limit), 256, 0, "g")]
        assert score_style(run.dataset, [words] * 2, [words] * 2, n, limit)["cut_off"] == cut


def test_serve_and_the_endpoint_eval_return_the_answer_without_end_of_turn(gemma_like: tuple[Path, str],
                                                                           tmp_path: Path) -> None:
    import openai

    from tests.serve.server import start_server
    from tuneforge.config.compose import load_run_config
    from tuneforge.evaluation.hosted import hosted_answers
    from tuneforge.train import train

    path, words = gemma_like
    run_dir = Path(train(load_run_config(overrides(path, "hparams.max_steps=1", "optim.lr=1e-4",
                                                   f"output_root={tmp_path / 'outputs'}")), quiet=True)["run_dir"])
    server = start_server(run_dir, tmp_path / "serve.log")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
        model = f"{run_dir.parent.name}-{run_dir.name}"
        resp = client.chat.completions.create(model=model, max_tokens=6,
                                              messages=[{"role": "user", "content": "Đà Lạt có hồ nào?"}])
        assert resp.choices[0].message.content == words and resp.choices[0].finish_reason == "stop"
        assert resp.usage.completion_tokens == 3  # A, B and the turn's end
        prompts = [[{"role": "user", "content": "Hồ nào?"}]]
        # the answer ended on its own at the last allowed token: not cut off; one token fewer: cut off
        assert hosted_answers(client, model, prompts, EvalConfig(max_new_tokens=4), 0, "g") == [(words.strip(), 3)]
        assert hosted_answers(client, model, prompts, EvalConfig(max_new_tokens=2), 0, "g") == [(words.strip(), 2)]
    finally:
        server.stop()
