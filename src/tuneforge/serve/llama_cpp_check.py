"""The exported GGUF in llama.cpp itself (through ``llama-cpp-python``), when it is installed.

transformers' GGUF loader (export_command.round_trip) de-quantizes the file into a PyTorch model; llama.cpp is
what Ollama and llama-server run. This check loads the file there and compares it with the merged model:

- the vocabulary: the same token ids for the test conversations;
- the chat template stored in the file is the run's (what Ollama / llama-server format prompts with);
- the logits on those conversations (llama.cpp's own kernels), within the export's tolerance, and top-1;
- the greedy answers llama.cpp gives through its chat-completion path (the file's own template, its own stop
  tokens): they must not carry a turn token (the failure users report after an export: the model talks past
  its turn), and how many are equal to the merged model's is recorded.

``llama-cpp-python`` compiles llama.cpp from source (no wheel on PyPI): ``pip install llama-cpp-python``
(measured: 454 s on a 2-core AMD EPYC); without it this check is skipped and says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TURN_MARKERS = ("<end_of_turn>", "<start_of_turn>", "<|im_end|>", "<|im_start|>", "<|eot_id|>")


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def llama_cpp_check(gguf: Path, tokenizer: Any, ids: Any, mask: Any, ref_logits: Any, prompts: list[list[dict]],
                    want: list[str], *, rtol: float, min_top1: float, max_tokens: int) -> dict[str, Any]:
    from llama_cpp import Llama

    n_ctx = max(512, int(mask.sum(-1).max()) + max_tokens + 64)
    llm = Llama(model_path=str(gguf), n_ctx=n_ctx, logits_all=True, verbose=False, seed=0,
                n_threads=max(1, os.cpu_count() or 1))
    try:
        return _compare(llm, tokenizer, ids, mask, ref_logits, prompts, want, rtol=rtol, min_top1=min_top1,
                        max_tokens=max_tokens)
    finally:
        llm.close()  # free llama.cpp's model now, not in a finalizer at interpreter exit


def _compare(llm: Any, tokenizer: Any, ids: Any, mask: Any, ref_logits: Any, prompts: list[list[dict]],
             want: list[str], *, rtol: float, min_top1: float, max_tokens: int) -> dict[str, Any]:
    import numpy as np

    rows = [row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)]
    texts = [tokenizer.decode(r) for r in rows]
    pairs = [(llm.tokenize(t.encode("utf-8"), add_bos=False, special=True),
              tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    same_ids = all(a == b for a, b in pairs)
    tokens = {"llama.cpp": sum(len(a) for a, _ in pairs), "run": sum(len(b) for _, b in pairs)}
    for a, b in pairs:  # the first place the two tokenizers part, as pieces a person can read
        if a != b:
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            tokens["first_difference"] = {
                "llama.cpp": [llm.detokenize([x]).decode("utf-8", "replace") for x in a[i:i + 4]],
                "run": tokenizer.convert_ids_to_tokens(b[i:i + 4])}
            break
    diffs, agree, n, max_ref = [], 0, 0, 0.0
    for i, row in enumerate(rows):
        llm.reset()
        llm.eval(row)
        got = np.asarray(llm.scores[: len(row)], dtype=np.float32)
        ref = ref_logits[i][: len(row)].numpy()
        diffs.append(float(np.abs(got - ref).max()))
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        n += len(row)
        max_ref = max(max_ref, float(np.abs(ref).max()))
    answers = []
    for msgs in prompts:
        out = llm.create_chat_completion(messages=msgs, temperature=0.0, top_k=1, max_tokens=max_tokens, seed=0)
        answers.append({"text": out["choices"][0]["message"]["content"].strip(),
                        "finish_reason": out["choices"][0]["finish_reason"]})
    template = llm.metadata.get("tokenizer.chat_template")
    limit = rtol * max_ref
    checks = {"token_ids_equal": same_ids, "chat_template_kept": template == tokenizer.chat_template,
              "logits_within_tolerance": max(diffs) <= limit, "top1_agreement_ok": agree / n >= min_top1,
              "no_turn_token_in_answers": not any(m in a["text"] for a in answers for m in TURN_MARKERS)}
    import llama_cpp

    return {"runtime": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
            "logits": {"max_abs_diff": max(diffs), "max_abs_logit": max_ref, "top1_agreement": agree / n,
                       "n_tokens": n},
            "tokens": tokens, "atol": limit,
            "greedy_answers_equal": sum(a["text"] == w for a, w in zip(answers, want, strict=True)),
            "answers": [{"merged": w, "llama.cpp": a["text"], "finish_reason": a["finish_reason"]}
                        for w, a in zip(want, answers, strict=True)],
            "checks": checks, "passed": all(checks.values())}
