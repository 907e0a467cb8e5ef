"""The merged model as one GGUF file (llama.cpp, Ollama) with its tokenizer and the run's chat template inside.

Why this way: the official ``gguf`` package has no HF -> GGUF converter, llama.cpp's converter is not on PyPI
and the one repackaging of it installs a second top-level ``gguf`` that clashes with the official one. What
``gguf`` has is what a converter is made of, and this module only wires those pieces: ``GGUFWriter``, the
per-architecture tensor-name map (``get_tensor_name_map``: HF name -> GGUF name, the same table llama.cpp's
converter uses) and the numpy quantizers (``quants.quantize``). The two layout conventions of llama.cpp that
differ from HF are the inverses of what transformers' own GGUF loader undoes (``LlamaTensorProcessor``:
q/k rows permuted for rotary; ``Gemma3TensorProcessor``: RMSNorm weights stored as 1 + w). The architecture
keys come from the model's ``config.json`` through transformers' GGUF key table (``GGUF_CONFIG_MAPPING``);
when the base model came from a GGUF (Gemma 3, SmolLM2), its llama.cpp-written keys and tokenizer are kept as
they are. Every export is then loaded back with transformers' GGUF loader and compared (gguf_check.py).

Architectures: llama (the tiny model, SmolLM2, Llama) and gemma3; others are refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, RunArtifactError

ARCHS = {"llama": "llama", "gemma3_text": "gemma3", "gemma3": "gemma3"}  # HF model_type -> GGUF architecture
QUANTS = ("f32", "f16", "bf16", "q8_0")


def _arch_keys(writer: Any, arch: str, cfg: dict[str, Any]) -> None:
    """``<arch>.*`` keys from config.json, through transformers' table of GGUF key -> config field."""
    from gguf import GGUFValueType
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    for key, field in GGUF_CONFIG_MAPPING[arch].items():
        if field is None or cfg.get(field) is None:
            continue
        value = cfg[field]
        vtype = GGUFValueType.FLOAT32 if isinstance(value, float) else GGUFValueType.UINT32
        writer.add_key_value(f"{arch}.{key}", value, vtype)
    if "head_dim" in cfg and f"{arch}.rope.dimension_count" not in writer.kv_data[0]:
        writer.add_key_value(f"{arch}.rope.dimension_count", int(cfg["head_dim"]), GGUFValueType.UINT32)
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta") or cfg.get("rope_theta")
    if theta is not None and f"{arch}.rope.freq_base" not in writer.kv_data[0]:
        writer.add_key_value(f"{arch}.rope.freq_base", float(theta), GGUFValueType.FLOAT32)


def _bpe_tokenizer(writer: Any, tokenizer: Any) -> None:
    """A byte-level BPE tokenizer (tokenizer.json) as llama.cpp's ``gpt2`` tokenizer: tokens, types, merges."""
    from gguf import TokenType

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE":
        raise RunArtifactError(f"GGUF export: a {spec['model']['type']} tokenizer without a source GGUF is not "
                               "supported (byte-level BPE, or a base model that came from a GGUF)")
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise RunArtifactError("GGUF export: the tokenizer's ids are not contiguous")
    special = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_type(spec.get("pre_tokenizer")))
    writer.add_token_list([t for t, _ in by_id])
    writer.add_token_types([TokenType.CONTROL if t in special else TokenType.NORMAL for t, _ in by_id])
    merges = spec["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for name, value in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                        ("pad", tokenizer.pad_token_id), ("unk", tokenizer.unk_token_id)):
        if value is not None:
            getattr(writer, f"add_{name}_token_id" if name != "unk" else "add_unk_token_id")(int(value))
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))


def _pre_type(pre: dict[str, Any] | None) -> str:
    """llama.cpp's name for the pre-tokenizer (tokenizer.ggml.pre): the regex it splits text with before BPE.

    GPT-2's byte-level regex is ``gpt-2``; SmolLM's (single digits first, then GPT-2's) is ``smollm``
    (llama.cpp's llama-vocab.cpp). ``default`` splits digits differently, so a wrong name changes token ids:
    the llama.cpp round trip (llama_cpp_check.py) compares them."""
    def byte_level(p: dict[str, Any]) -> bool:
        return p.get("type") == "ByteLevel" and p.get("use_regex", True)

    if pre is None:
        return "default"
    if byte_level(pre):
        return "gpt-2"
    parts = pre.get("pretokenizers") or []
    if (pre.get("type") == "Sequence" and len(parts) == 2 and parts[0].get("type") == "Digits"
            and parts[0].get("individual_digits") and byte_level(parts[1])):
        return "smollm"
    return "default"


def _copy_source_keys(writer: Any, source_gguf: Path) -> None:
    """Architecture and tokenizer keys of the GGUF the base model came from (written by llama.cpp's converter)."""
    from gguf import GGUFReader, GGUFValueType

    skip = ("GGUF.", "general.file_type", "general.quantization_version", "general.architecture",
            "general.name", "tokenizer.chat_template")  # the export's own name, not the base model's
    for key, field in GGUFReader(str(source_gguf)).fields.items():
        if key.startswith(skip):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub)


def _tensor(name: str, data: Any, arch: str, cfg: dict[str, Any]) -> Any:
    """HF layout -> llama.cpp layout: the inverse of transformers' GGUF tensor processors."""
    if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = int(cfg["num_attention_heads"])
        if name.endswith("k_proj.weight"):
            heads = int(cfg.get("num_key_value_heads") or heads)
        return data.reshape(heads, 2, data.shape[0] // heads // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)
    if arch == "gemma3" and name.endswith("norm.weight"):
        return data + 1
    return data


def _add_tensor(writer: Any, gname: str, data: Any, quant: str) -> str:
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    if data.ndim < 2 or quant == "f32":  # norms and biases stay f32, as llama.cpp's converter keeps them
        writer.add_tensor(gname, data.astype(np.float32))
        return "F32"
    if quant == "f16":
        writer.add_tensor(gname, data.astype(np.float16))
        return "F16"
    qtype = GGMLQuantizationType.Q8_0 if quant == "q8_0" else GGMLQuantizationType.BF16
    if data.shape[-1] % 32:  # Q8_0 blocks are 32 values along a row
        writer.add_tensor(gname, data.astype(np.float16))
        return "F16"
    writer.add_tensor(gname, quants.quantize(data.astype(np.float32), qtype), raw_dtype=qtype)
    return qtype.name


def write_gguf(model_dir: Path, out: Path, *, quant: str, chat_template: str, tokenizer: Any,
               source_gguf: Path | None, name: str) -> dict[str, Any]:
    """Write ``model_dir`` (an HF causal LM, safetensors) to ``out``; returns what was written."""
    from gguf import MODEL_ARCH, GGUFWriter, LlamaFileType, get_tensor_name_map
    from safetensors import safe_open

    if quant not in QUANTS:
        raise ConfigError(f"export.quant={quant!r} is not one of: {', '.join(QUANTS)}")
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    cfg = {**cfg, **(cfg.get("text_config") or {})}
    arch = ARCHS.get(cfg.get("model_type", ""))
    if arch is None:
        raise RunArtifactError(f"GGUF export: model_type {cfg.get('model_type')!r} is not supported; supported: "
                               + ", ".join(sorted(ARCHS)))
    n_layers = int(cfg["num_hidden_layers"])
    names = get_tensor_name_map(MODEL_ARCH.LLAMA if arch == "llama" else MODEL_ARCH.GEMMA3, n_layers)
    writer = GGUFWriter(str(out), arch)
    writer.add_name(name)
    if source_gguf is not None:
        _copy_source_keys(writer, source_gguf)
    else:
        _arch_keys(writer, arch, cfg)
        _bpe_tokenizer(writer, tokenizer)
    writer.add_chat_template(chat_template)  # the run's: what Ollama and llama.cpp format conversations with
    writer.add_file_type({"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16,
                          "bf16": LlamaFileType.MOSTLY_BF16, "q8_0": LlamaFileType.MOSTLY_Q8_0}[quant])
    kinds: dict[str, int] = {}
    tied = bool(cfg.get("tie_word_embeddings", arch == "gemma3"))
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                if tied and key == "lm_head.weight":
                    continue  # llama.cpp reuses token_embd
                gname = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if gname is None:
                    raise RunArtifactError(f"GGUF export: no GGUF name for tensor {key} ({arch})")
                data = _tensor(key, st.get_tensor(key).float().numpy(), arch, cfg)
                kind = _add_tensor(writer, gname, data, quant)
                kinds[kind] = kinds.get(kind, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"architecture": arch, "quant": quant, "tensors": kinds, "bytes": out.stat().st_size,
            "tokenizer": "copied from " + source_gguf.name if source_gguf else "from tokenizer.json (gpt2 BPE)"}
