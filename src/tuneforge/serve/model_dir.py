"""What ``tuneforge serve`` serves: a run's complete model in a directory transformers' server can load.

An adapter run is merged first (``tuneforge merge``: parity-checked, written to ``<run>/merged/``); a full
fine-tune serves ``model/``. The served directory ``<run>/serve/<model id>/`` links the weights, holds the
tokenizer as tuneforge loads it (turn tokens special, the run's chat template) and a ``generation_config.json``
holding the run's decoding (``eval.*``: greedy or sampling, max new tokens, repetition penalty, stop tokens), so
a request that does not set them decodes the way the run was evaluated. The model id, which clients send as
``model``, is ``<recipe>-<run timestamp>``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import RunArtifactError
from tuneforge.evaluation.artifacts import RunArtifacts
from tuneforge.schema.evaluation import EvalConfig

SERVE_DIR = "serve"


@dataclass(frozen=True)
class ServedModel:
    run_dir: Path
    model_id: str  # what clients send as `model` and what /v1/models lists
    root: Path  # <run>/serve: the server's working directory, so `model_id` names a local directory
    source: Path  # merged/ or model/
    decoding: EvalConfig
    system_prompt: str | None  # the run's (dataset.system_prompt or the training data's shared system turn)
    context_tokens: int  # the model's max_position_embeddings: a longer prompt is refused with a 400

    @property
    def path(self) -> Path:
        return self.root / self.model_id


def served_model_id(run_dir: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{run_dir.parent.name}-{run_dir.name}").strip("-.")


def refuse_hosted(run_dir: Path, command: str) -> None:
    from tuneforge.evaluation.hosted import hosted_run

    if hosted_run(run_dir):
        raise RunArtifactError(
            f"{command} does not apply to {run_dir}: it was fine-tuned by OpenAI, whose weights never leave OpenAI's "
            "servers; call its fine-tuned model through the API, or move its data to an open model (README: "
            "moving off OpenAI fine-tuning)")


def model_source(art: RunArtifacts, *, merge: bool) -> Path:
    """merged/ (merging first when allowed) for an adapter run, model/ for a full fine-tune."""
    if not art.uses_adapter:
        return art.weights
    if not (art.merged / "config.json").is_file():
        if not merge:
            raise RunArtifactError(f"{art.merged} does not exist and serve.merge=false; run `tuneforge merge "
                                   f"run={art.run_dir}` first, or leave serve.merge=true")
        from tuneforge.merge import merge_run

        merge_run(art.run_dir)
    return art.merged


def prepare_served_model(art: RunArtifacts, decoding: EvalConfig, *, merge: bool = True) -> ServedModel:
    """Build ``<run>/serve/<model id>/`` (links to the weights + the run's generation_config.json)."""
    from tuneforge.evaluation.artifacts import load_run_tokenizer
    from tuneforge.evaluation.runner import generation_config
    from tuneforge.inference import training_system_prompt

    source = model_source(art, merge=merge)
    model_id = served_model_id(art.run_dir)
    root = art.run_dir / SERVE_DIR
    target = root / model_id
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    # the tokenizer as tuneforge loads it (its turn tokens special, the run's chat template), not the saved files:
    # the server's decode then drops "<end_of_turn>" as chat and eval do
    tokenizer = load_run_tokenizer(art, source)
    tokenizer.save_pretrained(str(target))
    generation_config(tokenizer, decoding).save_pretrained(str(target))
    for f in source.iterdir():
        if f.is_file() and f.name != "parity.json" and not (target / f.name).exists():
            (target / f.name).symlink_to(f.resolve())
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    context = int(text_config(config).get("max_position_embeddings") or art.run.hparams.seq_len)
    return ServedModel(art.run_dir, model_id, root, source, decoding, training_system_prompt(art), context)


def prepare_base_served_model(art: RunArtifacts, decoding: EvalConfig) -> ServedModel:
    """The run's base model as an A/B arm, served with the run's tokenizer, chat template, system prompt and
    decoding (so the arms differ in their weights only): ``<run>/serve/<model id>-base/``."""
    from tuneforge.evaluation.artifacts import load_run_tokenizer
    from tuneforge.evaluation.runner import generation_config
    from tuneforge.inference import training_system_prompt
    from tuneforge.models import resolve_model_path

    source = Path(resolve_model_path(art.run.model))
    if art.run.init.run is not None or not (source / "config.json").is_file():
        raise RunArtifactError(f"serve.ab.base=true needs the base model as a local directory; {art.run_dir} starts "
                               f"from {art.run.init.run or art.run.model.name_or_path}: serve another run as arm "
                               "B with serve.ab.run_b=<dir>")
    model_id = f"{served_model_id(art.run_dir)}-base"
    root = art.run_dir / SERVE_DIR
    target = root / model_id
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    tokenizer = load_run_tokenizer(art)  # the run's (its chat template), as arm A has it
    tokenizer.save_pretrained(str(target))
    generation_config(tokenizer, decoding).save_pretrained(str(target))
    for f in source.iterdir():
        if f.is_file() and not (target / f.name).exists():
            (target / f.name).symlink_to(f.resolve())
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    context = int(text_config(config).get("max_position_embeddings") or art.run.hparams.seq_len)
    return ServedModel(art.run_dir, model_id, root, source, decoding, training_system_prompt(art), context)


def link_into(served: ServedModel, root: Path) -> ServedModel:
    """``served`` reachable from another server's working directory ``root`` (a link named by its model id)."""
    link = root / served.model_id
    if link.resolve() == served.path.resolve():  # already there (the run's own base arm)
        return served
    if link.is_symlink():  # an earlier A/B's link
        link.unlink()
    if link.exists():
        raise RunArtifactError(f"{link} exists and is not {served.path}; the two arms need different model ids")
    link.symlink_to(served.path.resolve(), target_is_directory=True)
    return ServedModel(served.run_dir, served.model_id, root, served.source, served.decoding, served.system_prompt,
                       served.context_tokens)


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("text_config") or config


# --- plan: what would run, and the memory it needs ------------------------------------------------------------

def _weights_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))


def memory_estimate(model_dir: Path, decoding: EvalConfig, prompt_tokens: int, concurrent: int = 1) -> dict:
    """Weights as stored + the KV cache of ``concurrent`` requests of ``prompt_tokens`` + max_new_tokens."""
    cfg = text_config(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
    layers = int(cfg.get("num_hidden_layers", 0))
    kv_heads = int(cfg.get("num_key_value_heads") or cfg.get("num_attention_heads") or 0)
    head_dim = int(cfg.get("head_dim") or (cfg.get("hidden_size", 0) // max(1, cfg.get("num_attention_heads", 1))))
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    width = 4 if "32" in dtype else 2
    tokens = prompt_tokens + decoding.max_new_tokens
    kv = 2 * layers * kv_heads * head_dim * width * tokens * concurrent
    weights = _weights_bytes(model_dir)
    return {"weights_bytes": weights, "kv_cache_bytes": kv, "tokens_per_request": tokens, "concurrent": concurrent,
            "dtype": dtype, "total_bytes": weights + kv}
