"""An Ollama ``Modelfile`` for an exported GGUF: the chat template in Ollama's Go-template syntax, the stop
tokens, the run's system prompt and decoding.

Ollama does not run Jinja, so the template is one of the known families (ChatML for the tiny model, SmolLM2
and Qwen; Gemma's turns), chosen by the run's own Jinja template and checked against it: a sample
conversation formatted by the family's rule must equal what the run's template produces (less the BOS token,
which llama.cpp adds itself). A run whose template matches no family is refused by name, never exported
with a template that would format conversations differently from training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneforge.errors import RunArtifactError
from tuneforge.schema.evaluation import EvalConfig

CHATML_GO = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
             '<|im_start|>assistant\n')
GEMMA_GO = ('{{- $system := "" }}{{- range .Messages }}{{- if eq .Role "system" }}{{ $system = .Content }}'
            '{{- else if eq .Role "user" }}<start_of_turn>user\n{{ if $system }}{{ $system }}\n\n{{ $system = "" }}'
            '{{ end }}{{ .Content }}<end_of_turn>\n{{ else if eq .Role "assistant" }}<start_of_turn>model\n'
            '{{ .Content }}<end_of_turn>\n{{ end }}{{- end }}<start_of_turn>model\n')


def _chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def _gemma(messages: list[dict]) -> str:
    out, system = "", ""
    for m in messages:
        if m["role"] == "system":
            system = m["content"]
        elif m["role"] == "user":
            out += f"<start_of_turn>user\n{system + chr(10) * 2 if system else ''}{m['content']}<end_of_turn>\n"
            system = ""
        else:
            out += f"<start_of_turn>model\n{m['content']}<end_of_turn>\n"
    return out + "<start_of_turn>model\n"


FAMILIES: dict[str, tuple[str, Callable[[list[dict]], str], tuple[str, ...]]] = {
    "chatml": (CHATML_GO, _chatml, ("<|im_end|>", "<|im_start|>")),
    "gemma": (GEMMA_GO, _gemma, ("<end_of_turn>", "<start_of_turn>")),
}
SAMPLE = [{"role": "system", "content": "Bạn là hướng dẫn viên."}, {"role": "user", "content": "Đà Lạt ở đâu?"},
          {"role": "assistant", "content": "Ở Lâm Đồng."}, {"role": "user", "content": "Đi tháng mấy?"}]


def template_family(tokenizer: Any) -> str:
    """The family whose rule formats a sample conversation exactly as the run's Jinja template does."""
    try:
        jinja = tokenizer.apply_chat_template(SAMPLE, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - a template may reject the system turn or the order
        raise RunArtifactError(f"Modelfile: the run's chat template cannot format a sample conversation: {exc}") \
            from None
    bos = tokenizer.bos_token or ""
    for name, (_, render, _) in FAMILIES.items():
        if render(SAMPLE) in (jinja, jinja.removeprefix(bos)):
            return name
    raise RunArtifactError("Modelfile: the run's chat template is none of the families Ollama gets a template for "
                           f"here ({', '.join(FAMILIES)}); the GGUF still carries the Jinja template")


def modelfile(gguf_name: str, tokenizer: Any, decoding: EvalConfig, system_prompt: str | None, run_label: str) -> str:
    family = template_family(tokenizer)
    go, _, stops = FAMILIES[family]
    lines = [f"# {run_label}: ollama create <name> -f <this file>  (written by tuneforge export; template: {family})",
             f"FROM ./{gguf_name}", f'TEMPLATE """{go}"""']
    if system_prompt:
        lines.append(f'SYSTEM """{system_prompt}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        lines.append(f'PARAMETER stop "{tokenizer.eos_token}"')
    lines.append(f"PARAMETER num_predict {decoding.max_new_tokens}")
    if decoding.do_sample:
        lines += [f"PARAMETER temperature {decoding.temperature}", f"PARAMETER top_p {decoding.top_p}"]
    else:
        lines += ["PARAMETER temperature 0", "PARAMETER top_k 1"]
    if decoding.repetition_penalty != 1.0:
        lines.append(f"PARAMETER repeat_penalty {decoding.repetition_penalty}")
    return "\n".join(lines) + "\n"
