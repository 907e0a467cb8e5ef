"""Range and compatibility checks that types cannot express. Every failure names the key and what is valid.

axolotl's own validator lets negative lora_r, zero batch sizes and negative learning rates through; we
refuse them here, before anything is written or launched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tuneforge.config.objective_checks import check_init, check_objective
from tuneforge.config.run_checks import check_run
from tuneforge.errors import ConfigError
from tuneforge.evaluation.checks import check_eval
from tuneforge.schema.dataset import FORMAT_NAMES, dataset_problems
from tuneforge.schema.gpu import check_gpu
from tuneforge.schema.run import RunConfig
from tuneforge.tracking.trackers import check_tracking

DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
# transformers' SchedulerType / OptimizerNames values (5.16), listed here because importing them would pull
# torch into `plan`; tests/config/test_errors.py checks the lists still match the installed transformers.
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
              "warmup_stable_decay", "greedy")
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit",
    "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit",
    "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise",
    "stable_adamw",
)
TRACKERS = ("none", "wandb", "tensorboard")

Check = Callable[[RunConfig], Iterable[str]]


def _choice(key: str, value: object, valid: Iterable[str]) -> Iterable[str]:
    valid = list(valid)
    if value not in valid:
        yield f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}"


def check_core(run: RunConfig) -> Iterable[str]:
    from tuneforge.backends.registry import BACKENDS
    from tuneforge.launch.registry import LAUNCHERS
    from tuneforge.strategies.registry import STRATEGIES

    o, h, m, mo = run.optim, run.hparams, run.method, run.model
    yield from _choice("method.name", m.name, STRATEGIES)
    yield from _choice("backend.name", run.backend.name, BACKENDS)
    yield from _choice("launcher.name", run.launcher.name, LAUNCHERS)
    yield from _choice("tracking.name", run.tracking.name, TRACKERS)
    yield from _choice("model.dtype", mo.dtype, DTYPES)
    yield from _choice("model.init", mo.init, ("pretrained", "random"))
    yield from _choice("hparams.mixed_precision", h.mixed_precision, MIXED_PRECISION)
    yield from _choice("optim.scheduler", o.scheduler, SCHEDULERS)
    if o.optimizer not in OPTIMIZERS:
        import difflib

        close = difflib.get_close_matches(o.optimizer, OPTIMIZERS, n=3, cutoff=0.5)
        yield (f"optim.optimizer={o.optimizer!r} is not valid" + (f" (did you mean {', '.join(close)}?)" if close
               else "") + "; common: adamw_torch, adamw_torch_fused, paged_adamw_8bit, adafactor, sgd "
               f"(all {len(OPTIMIZERS)}: transformers' OptimizerNames)")
    if not o.lr > 0:
        yield f"optim.lr={o.lr} must be > 0 (typical: 1e-5 .. 3e-4 for LoRA, 1e-5 for full fine-tunes)"
    if o.weight_decay < 0:
        yield f"optim.weight_decay={o.weight_decay} must be >= 0"
    if not 0 <= o.warmup_ratio < 1:
        yield f"optim.warmup_ratio={o.warmup_ratio} must be in [0, 1)"
    if o.warmup_steps < 0:
        yield f"optim.warmup_steps={o.warmup_steps} must be >= 0"
    if o.max_grad_norm < 0:
        yield f"optim.max_grad_norm={o.max_grad_norm} must be >= 0 (0 disables clipping)"
    if h.micro_batch_size < 1:
        yield f"hparams.micro_batch_size={h.micro_batch_size} must be >= 1"
    if h.grad_accumulation < 1:
        yield f"hparams.grad_accumulation={h.grad_accumulation} must be >= 1"
    if h.seq_len < 8:
        yield f"hparams.seq_len={h.seq_len} must be >= 8"
    if h.max_steps == 0 or h.max_steps < -1:
        yield f"hparams.max_steps={h.max_steps} must be > 0, or -1 to train for hparams.epochs"
    if h.max_steps == -1 and not h.epochs > 0:
        yield f"hparams.epochs={h.epochs} must be > 0 when hparams.max_steps is -1"
    for key in ("logging_steps", "eval_steps", "save_steps"):
        v = getattr(h, key)
        if v is not None and v < 1:
            yield f"hparams.{key}={v} must be >= 1 (or null)"
    if mo.tiny is None and mo.name_or_path.startswith(("/", "./", "../", "~")):
        from pathlib import Path

        local = Path(mo.name_or_path).expanduser()
        if not (local / "config.json").is_file():
            yield (f"model.name_or_path={mo.name_or_path!r}: no model there (expected a directory with "
                   "config.json saved by save_pretrained); fix the path, or use a hub id such as "
                   "meta-llama/Llama-3.1-8B")
    if mo.tiny is not None:
        t = mo.tiny
        if t.num_attention_heads < 1 or t.num_key_value_heads < 1:
            pass  # run_checks names the non-positive size; the divisions below would raise
        elif t.hidden_size % t.num_attention_heads:
            yield (f"model.tiny.hidden_size={t.hidden_size} must be divisible by "
                   f"model.tiny.num_attention_heads={t.num_attention_heads}")
        elif t.num_attention_heads % t.num_key_value_heads:
            yield "model.tiny.num_attention_heads must be a multiple of model.tiny.num_key_value_heads"
        if h.seq_len > t.max_position_embeddings:
            yield (f"hparams.seq_len={h.seq_len} exceeds model.tiny.max_position_embeddings="
                   f"{t.max_position_embeddings}")


def _component_checks(run: RunConfig) -> Iterable[str]:
    """Each strategy, backend and launcher checks what it supports (the strategy x backend x launcher matrix)."""
    from tuneforge.backends.registry import BACKENDS, get_backend
    from tuneforge.launch.registry import LAUNCHERS, get_launcher
    from tuneforge.strategies.registry import STRATEGIES

    if run.method.name in STRATEGIES:
        yield from STRATEGIES[run.method.name].check(run)
    if run.backend.name in BACKENDS:  # only the backend and launcher the run names are imported
        from tuneforge.backends.coverage import check_unsupported

        backend = get_backend(run.backend.name)
        yield from backend.check(run)
        yield from check_unsupported(run, backend)  # a setting it cannot honour is refused, never dropped
    if run.launcher.name in LAUNCHERS:
        yield from get_launcher(run.launcher.name).check(run)


def check_dataset(run: RunConfig) -> Iterable[str]:
    """The dataset group's own rules, the backend's data shape, and a missing source file (for runs here)."""
    yield from dataset_problems(run.dataset)
    from tuneforge.backends.registry import BACKENDS, get_backend

    if run.backend.name in BACKENDS and run.dataset.format in FORMAT_NAMES:
        backend = get_backend(run.backend.name)
        if run.dataset.format not in backend.data_formats:
            takers = [n for n in BACKENDS if run.dataset.format in get_backend(n).data_formats]
            yield (f"dataset.format={run.dataset.format} (dataset {run.dataset.name!r}) is not a format backend="
                   f"{backend.name} trains on ({backend.task}: {', '.join(backend.data_formats)})"
                   + (f"; use backend={' or backend='.join(takers)}" if takers else ""))
    from tuneforge.data.prepare import source_path
    from tuneforge.data.source_file import source_file_problem
    from tuneforge.launch.registry import LAUNCHERS, get_launcher

    # a missing source fails here, before a run directory exists; a batch job's nodes may see other paths
    problem = source_file_problem(source_path(run.dataset))
    if problem is not None and run.launcher.name in LAUNCHERS and get_launcher(run.launcher.name).runs_here:
        yield (f"dataset.path={run.dataset.path!r}: {problem} ({source_path(run.dataset)}); point "
               "dataset.path at the source file, or pick a dataset=... from conf/dataset/")


CHECKS: list[Check] = [check_core, _component_checks, check_dataset, check_eval, check_tracking, check_gpu,
                       check_run, check_objective, check_init]


def validate(run: RunConfig) -> RunConfig:
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(run))
    if problems:
        head = "invalid config" if len(problems) > 1 else "invalid config:"
        if len(problems) == 1:
            raise ConfigError(f"{head} {problems[0]}")
        raise ConfigError(head + ":\n" + "\n".join(f"  - {p}" for p in problems))
    return run
