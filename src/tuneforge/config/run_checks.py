"""Compose-time checks of the values that used to slip through to a traceback, a garbage run or a wrong place:

- paths: a recipe/run ``name`` is one safe path component, ``output_root`` is not the filesystem root, a
  relative ``run_dir`` stays inside ``output_root`` (an absolute one is what the user typed, and is allowed);
- numbers: no NaN or infinity anywhere (they train to garbage and exit 0);
- ranges the schema types cannot say (Adam betas, epsilon, workers, the tiny model's sizes, ...);
- settings the Trainer would silently ignore (eval without a validation split, ``save_total_limit=0``);
- ``model.attn_implementation`` and LoRA ``target_modules`` where the model's layers are known.

Each problem names the key, the bad value and what is valid. Registered in :data:`validate.CHECKS`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tuneforge.schema.run import RunConfig
from tuneforge.strategies.registry import get_strategy

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
# the linear layers of the Llama-family decoders (llama, mistral, qwen2): what LoRA can target
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _leaves(getattr(obj, f.name), f"{prefix}{f.name}.")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix[:-1]}[{i}].")
    else:
        yield prefix[:-1], obj


def check_finite(run: RunConfig) -> Iterable[str]:
    for key, value in _leaves(run):
        if isinstance(value, float) and not math.isfinite(value):
            yield f"{key}={value} is not a finite number (NaN and infinity train to garbage)"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_paths(run: RunConfig) -> Iterable[str]:
    if not SAFE_NAME.match(run.name) or run.name in (".", ".."):
        yield (f"name={run.name!r} must be a single safe path component (ASCII letters, digits, '.', '_', '+', '-'; "
               "no '/' or '..'): it names the directory outputs/<name>/")
    if not str(run.output_root).strip():
        yield "output_root is empty; give a directory (default: outputs)"
        return
    root = Path(run.output_root).expanduser().resolve()
    if root == Path(root.anchor):
        yield (f"output_root={run.output_root!r} is the filesystem root; runs would land in /{run.name}/...; "
               "give a directory of its own (default: outputs)")
    if run.run_dir is not None:
        if not str(run.run_dir).strip():
            yield "run_dir is empty; give a directory, or leave it unset for a new timestamped one"
            return
        from tuneforge.rundir import explicit_run_dir

        given = Path(run.run_dir).expanduser()
        under = (explicit_run_dir(run) or given).resolve()
        if not given.is_absolute() and not _inside(under, root):
            yield (f"run_dir={run.run_dir!r} resolves to {under}, outside output_root={root}; "
                   "a relative run_dir is a directory under output_root (write an absolute path to put a run "
                   "anywhere else)")
        elif given.resolve() == Path(given.resolve().anchor):
            yield f"run_dir={run.run_dir!r} is the filesystem root"


def check_ranges(run: RunConfig) -> Iterable[str]:
    o, h, m = run.optim, run.hparams, run.model
    for key in ("adam_beta1", "adam_beta2"):
        v = getattr(o, key)
        if math.isfinite(v) and not 0 <= v < 1:
            yield f"optim.{key}={v} must be in [0, 1) (typical: beta1 0.9, beta2 0.999)"
    if math.isfinite(o.adam_epsilon) and not o.adam_epsilon > 0:
        yield f"optim.adam_epsilon={o.adam_epsilon} must be > 0 (typical: 1e-8)"
    if math.isfinite(h.epochs) and h.epochs < 0:
        yield f"hparams.epochs={h.epochs} must be >= 0"
    if h.dataloader_num_workers < 0:
        yield f"hparams.dataloader_num_workers={h.dataloader_num_workers} must be >= 0 (0: load in the main process)"
    if h.save_total_limit < 1:
        yield (f"hparams.save_total_limit={h.save_total_limit} must be >= 1: the Trainer reads 0 as 'keep every "
               "checkpoint', not 'keep none' (use hparams.save_steps=null to save only at the end)")
    if h.max_eval_samples is not None and h.max_eval_samples < 1:
        yield (f"hparams.max_eval_samples={h.max_eval_samples} must be >= 1, or null to use the whole "
               "validation split")
    if h.eval_steps is not None and run.dataset.split.val <= 0:
        yield (f"hparams.eval_steps={h.eval_steps} needs a validation split, but dataset.split.val="
               f"{run.dataset.split.val}; give the split a val share (e.g. dataset.split.val=0.1) or set "
               "hparams.eval_steps=null")
    if m.tiny is not None:
        t = m.tiny
        for f in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "max_position_embeddings"):
            if getattr(t, f) < 1:
                yield f"model.tiny.{f}={getattr(t, f)} must be >= 1"
        if t.num_attention_heads > 0 and t.hidden_size > 0 and t.hidden_size % t.num_attention_heads == 0 \
                and (t.hidden_size // t.num_attention_heads) % 2:
            yield (f"model.tiny.hidden_size / num_attention_heads = {t.hidden_size // t.num_attention_heads} "
                   "must be even (rotary position embeddings rotate pairs of dimensions)")
    yield from _check_attention(run)
    yield from _check_target_modules(run)
    yield from _check_adapted_layers(run)


def _check_attention(run: RunConfig) -> Iterable[str]:
    impl = run.model.attn_implementation
    if "/" in impl:  # a hub kernel (kernels-community/flash-attn): the kernels package checks it on load
        return
    if impl not in ATTN_IMPLEMENTATIONS:
        yield (f"model.attn_implementation={impl!r} is not valid; choose one of: {', '.join(ATTN_IMPLEMENTATIONS)}"
               " (or a hub kernel such as kernels-community/flash-attn)")
        return
    if impl.startswith("flash_attention") and run.launcher.name == "local":
        from tuneforge.distributed.devices import runs_on_cpu

        if runs_on_cpu(run):
            yield (f"model.attn_implementation={impl} needs a CUDA GPU (the flash-attn kernels have no CPU "
                   "version), and this run trains here on CPU; use model.attn_implementation=sdpa")


def _check_target_modules(run: RunConfig) -> Iterable[str]:
    m = run.method
    if not get_strategy(run).uses_adapter or run.model.model_type not in LLAMA_FAMILY:
        return
    if list(m.target_modules) in (["all-linear"],):
        return
    unknown = [t for t in m.target_modules if t.split(".")[-1] not in LLAMA_LINEAR]
    if unknown:
        yield (f"method.target_modules: {', '.join(map(repr, unknown))} is not a linear layer of "
               f"{run.model.model_type} models; they are: {', '.join(LLAMA_LINEAR)} (or 'all-linear')")


def _check_adapted_layers(run: RunConfig) -> Iterable[str]:
    from tuneforge.estimate import known_layer_count

    m = run.method
    if not get_strategy(run).uses_adapter or m.layers_to_transform is None:
        return
    layers = list(m.layers_to_transform)
    n = known_layer_count(run)
    if not layers:
        yield ("method.layers_to_transform=[] adapts no layer; give the layers to adapt (e.g. "
               "[-8,-7,-6,-5,-4,-3,-2,-1] for the top 8), or null for every layer")
    elif n is not None:
        bad = [i for i in layers if not -n <= i < n]
        if bad:
            yield (f"method.layers_to_transform: {bad} outside the {n} layers of {run.model.name_or_path} "
                   f"(valid: 0..{n - 1}, or -{n}..-1 counted from the top)")
    elif any(i < 0 for i in layers):
        yield (f"method.layers_to_transform={layers} counts from the top, but the number of layers of "
               f"{run.model.name_or_path} is not known here; give 0-based indices")


CHECKS = [check_finite, check_paths, check_ranges]


def check_run(run: RunConfig) -> Iterable[str]:
    for check in CHECKS:
        yield from check(run)
