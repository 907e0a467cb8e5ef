"""The axolotl backend: the run config becomes a native axolotl YAML (``<run_dir>/axolotl.yaml``), checked
by axolotl's own validator, trained by ``python -m axolotl.cli.train <run_dir>/axolotl.yaml`` under whatever
launcher the config names (accelerate starts one per GPU; the local launcher one process).

Translation (:func:`build_axolotl_config`, in :mod:`tuneforge.backends.axolotl_config`) is a pure function of
the run config and paths: no torch, no axolotl import, so ``plan`` shows the YAML in milliseconds. axolotl is
imported lazily in :func:`validate_axolotl_config` (``prepare`` runs it before every launch) and inside the
training process.

Artifact parity with the native backend: axolotl's ``output_dir`` is ``<run_dir>/checkpoints`` (its
checkpoints stay there, resumable), and a small axolotl plugin (:class:`TuneforgeAxolotlPlugin`, listed in
the YAML's ``plugins``) adds tuneforge's metrics callback, so ``metrics.jsonl`` has the same records as a
native run, and after training moves the final weights + tokenizer into ``<run_dir>/adapter`` (or
``model``) and writes ``worker_result.json``. eval/merge/chat never need to know which backend trained.

Data: the dataset is prepared by tuneforge (:func:`tuneforge.data.prepare.prepare_splits`, any source format ->
chat JSONL with ``messages``), so axolotl always reads ``type: chat_template`` files; the chat template is
the one the native backend uses (the tokenizer's, or tuneforge's named template passed as ``jinja``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tuneforge.backends.axolotl_config import (  # noqa: F401  (the translation's names, used from here too)
    AXOLOTL_YAML,
    DEVICES,
    PLUGIN,
    VAL_SUBSET,
    _dtype_problems,
    build_axolotl_config,
    data_paths,
    model_path,
    on_cpu,
)
from tuneforge.schema.components import CONVERSATION_FORMATS, BackendBase, LossMask
from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)

# files of axolotl's final save that belong to the run's weights directory (the rest stays in checkpoints/)
_NOT_WEIGHTS = {"debug.log"}
_BASE_MODEL_FILES = {"config.json", "generation_config.json"}  # written for full models; not part of an adapter


class _BlockStrings(yaml.SafeDumper):
    """Multi-line strings (chat templates) as literal blocks, so the YAML reads like the template."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStrings.add_representer(str, _str)


def render_axolotl_yaml(cfg: dict[str, Any]) -> str:
    header = ("# axolotl config written by tuneforge (tuneforge.backends.axolotl.build_axolotl_config);\n"
              "# trained with: python -m axolotl.cli.train <this file>\n")
    return header + yaml.dump(cfg, Dumper=_BlockStrings, sort_keys=False, allow_unicode=True, width=1000)


class _WarningRecords(logging.Handler):
    """Collects the WARNING records axolotl's validators log, so the plan can show them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().strip()
        if msg and msg not in self.messages:
            self.messages.append(msg)


@contextlib.contextmanager
def host_logging_kept() -> Iterator[None]:
    """Undo what importing ``axolotl.cli`` does to the importing process's logging.

    Its ``configure_logging()`` runs ``dictConfig`` (root level WARNING, stdout handlers on the root logger)
    and ``logging.setLoggerClass(AxolotlLogger)``, whose filter drops every record below WARNING of each
    non-axolotl logger created afterwards: after a ``plan``/validation of an axolotl run, a notebook's or a
    sweep's INFO logs (tuneforge's own trial.log) went missing. axolotl's own ``axolotl`` loggers keep their
    configuration; the root logger's handlers and level, and the logger class, are the host's again."""
    root = logging.getLogger()
    handlers, level, logger_class = list(root.handlers), root.level, logging.getLoggerClass()
    try:
        yield
    finally:
        logging.setLoggerClass(logger_class)
        for h in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(h)
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)


def validate_axolotl_config(cfg: dict[str, Any], *, source: str = AXOLOTL_YAML,
                            normalize: bool | None = None, warnings: list[str] | None = None) -> Any:
    """Run axolotl's own ``validate_config`` (and ``normalize_config``, which loads the base model's config:
    by default only when that is a local directory) on the emitted config. Raises ConfigError. The
    warnings axolotl's validators log ("sample_packing & torch sdpa with bf16 ... 0.0 loss") are appended to
    ``warnings`` (the plan's), or printed when no list is given."""
    quiet_axolotl_env()
    # axolotl configures logging on import: import it first (a missing axolotl is reported by
    # _validate_axolotl_config), and give the host process its own logging back
    with contextlib.suppress(ImportError), host_logging_kept():
        import axolotl.cli.config  # noqa: F401
    records = _WarningRecords()
    axolotl_log = logging.getLogger("axolotl")
    axolotl_log.addHandler(records)
    try:
        return _validate_axolotl_config(cfg, source=source, normalize=normalize)
    finally:
        axolotl_log.removeHandler(records)
        found = [f"axolotl: {m}" for m in records.messages]
        if warnings is not None:
            warnings.extend(w for w in found if w not in warnings)
        else:
            for w in found:
                print(f"tuneforge: warning: {w}", file=sys.stderr, flush=True)


def _validate_axolotl_config(cfg: dict[str, Any], *, source: str, normalize: bool | None) -> Any:
    from tuneforge.errors import ConfigError

    quiet_axolotl_env()
    try:
        from axolotl.cli.config import gpu_capabilities
        from axolotl.utils.config import normalize_config, prepare_plugins, validate_config
        from axolotl.utils.dict import DictDefault
    except ImportError as exc:
        raise ConfigError(f"backend=axolotl: axolotl is not importable ({exc}); `make setup` installs it "
                          "(requirements/axolotl-runtime.txt)") from None
    if normalize is None:
        normalize = Path(str(cfg.get("base_model", ""))).is_dir()
    dd = DictDefault(copy.deepcopy(cfg))
    try:
        prepare_plugins(dd)
        capabilities, env_capabilities = gpu_capabilities()
        from axolotl.integrations.config import merge_input_args

        from tuneforge.backends.escape_hatch import unknown_axolotl_keys

        unknown = unknown_axolotl_keys(cfg, merge_input_args()[1])  # axolotl would drop them without a word
        if unknown:
            raise ConfigError("; ".join(unknown))
        checked = validate_config(dd, capabilities=capabilities, env_capabilities=env_capabilities)
        if normalize:
            normalize_config(checked)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError / ValueError / AssertionError from axolotl
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        raise ConfigError(f"axolotl rejects {source}: {' | '.join(lines[:6]) or type(exc).__name__}") from None
    return checked


def quiet_axolotl_env(offline: bool = False) -> None:
    """No telemetry from axolotl (and, for CPU runs, no hub traffic), here and in the processes started
    from here; a user's explicit setting wins."""
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _hatch_type_problems(run: RunConfig) -> Iterable[str]:
    """Each hatch value against its field in axolotl's pydantic schema (the import takes seconds: only when the
    hatch is used; keys it does not know are named by axolotl's validator, with the plugins' fields)."""
    from tuneforge.backends.escape_hatch import AXOLOTL_MODELED, EXTENDED_LISTS
    from tuneforge.backends.hatch_types import pydantic_type_problems

    params = {k: v for k, v in run.backend.additional_parameters.items()
              if k not in AXOLOTL_MODELED and k not in EXTENDED_LISTS}
    if not params:
        return
    quiet_axolotl_env()
    try:
        with host_logging_kept():  # axolotl configures logging on import
            from axolotl.utils.schemas.config import AxolotlInputConfig
    except ImportError:
        return  # axolotl's absence is named by the validator before launch
    yield from pydantic_type_problems(params, AxolotlInputConfig, "axolotl's config schema")


class AxolotlBackend(BackendBase):
    name = "axolotl"
    objectives = ("sft", "dpo")  # objective=... it trains (tuneforge.schema.objective)
    data_formats = (*CONVERSATION_FORMATS, "preference")

    def coverage(self) -> dict[str, str]:
        from tuneforge.backends.coverage import AXOLOTL

        return AXOLOTL

    def loss_mask(self, run: RunConfig) -> LossMask:
        return "all-tokens" if run.backend.train_on_inputs else "assistant-only"

    def plan_notes(self, run: RunConfig) -> list[str]:
        notes = ["axolotl.yaml is checked by axolotl's validate_config/normalize_config before launch "
                 "(`plan --validate` runs it now)"]
        if on_cpu(run):
            notes.append("CPU run: axolotl's CUDA LoRA kernels and bf16/fp16/tf32 are turned off")
        return notes

    def check(self, run: RunConfig) -> Iterable[str]:
        from tuneforge.models import CHAT_TEMPLATES

        b = run.backend
        if b.device not in DEVICES:
            yield f"backend.device={b.device!r} is not valid; choose one of: {', '.join(DEVICES)}"
        if run.model.chat_template not in ("tokenizer_default", *CHAT_TEMPLATES):
            yield (f"model.chat_template={run.model.chat_template!r} is not known; "
                   f"choose one of: tokenizer_default, {', '.join(CHAT_TEMPLATES)}")
        if on_cpu(run) and run.model.attn_implementation.startswith("flash_attention"):
            yield (f"model.attn_implementation={run.model.attn_implementation} needs a CUDA GPU, but this run "
                   "is on CPU; use model.attn_implementation=sdpa")
        from tuneforge.backends.escape_hatch import check_axolotl_hatch

        yield from check_axolotl_hatch(run)
        yield from _hatch_type_problems(run)
        yield from _dtype_problems(run)
        from tuneforge.distributed.deepspeed import world_size

        if on_cpu(run) and world_size(run) > 1:
            # checked with axolotl 0.19: each rank asks torch for its accelerator device and fails on CPU
            yield (f"backend=axolotl runs {world_size(run)} processes only on GPUs (each rank binds to an "
                   "accelerator device); on CPU use launcher.gpus_per_node=1, or backend=native for CPU data "
                   "parallel")
        if b.dataset_processes is not None and b.dataset_processes < 1:
            yield f"backend.dataset_processes={b.dataset_processes} must be >= 1 (or null)"
        from tuneforge.backends.axolotl_rl import rl_problems

        yield from rl_problems(run)

    def artifacts(self, run: RunConfig, run_dir: Path) -> dict[str, str]:
        """What ``prepare`` writes, for ``plan`` (no torch, no axolotl, nothing prepared)."""
        return {AXOLOTL_YAML: render_axolotl_yaml(build_axolotl_config(run, run_dir))}

    def prepare(self, run: RunConfig, run_dir: Path) -> dict[str, Path]:
        """Build the tiny model / prepare the data if needed, write axolotl.yaml, validate it with axolotl."""
        from tuneforge.rundir import atomic_write_text

        quiet_axolotl_env(offline=on_cpu(run))
        cfg = build_axolotl_config(run, run_dir, base_model=model_path(run, build=True),
                                   data=data_paths(run, prepare=True, run_dir=run_dir))
        validate_axolotl_config(cfg, source=str(run_dir / AXOLOTL_YAML), normalize=None)
        from tuneforge.secrets import secret_items

        if leaked := [k for k, _ in secret_items(cfg)]:  # compose refuses them; never let one reach the file
            from tuneforge.errors import ConfigError

            raise ConfigError(f"axolotl.yaml would hold a credential under {', '.join(leaked)}; set it in the "
                              "environment instead")
        path = run_dir / AXOLOTL_YAML
        atomic_write_text(path, render_axolotl_yaml(cfg))
        return {"config": run_dir / "config.yaml", "axolotl": path}

    def command(self, run: RunConfig, run_dir: Path) -> list[str]:
        return ["-m", "axolotl.cli.train", str(Path(run_dir) / AXOLOTL_YAML)]

    def run_in_process(self, run: RunConfig, run_dir: Path) -> dict[str, Any] | None:
        return None  # axolotl runs as its own process (fire CLI, its own logging and signal handling)


# --- inside the axolotl process: the plugin ----------------------------------------------------------------


def collect_weights(run_dir: Path, out_dir: Path, adapter: bool) -> Path:
    """Move axolotl's final save (files at the top of output_dir) into <run_dir>/adapter|model, atomically."""
    from tuneforge.rundir import atomic_write_dir

    def move(tmp: Path) -> None:
        for p in sorted(out_dir.iterdir()):
            if p.is_file() and p.name not in _NOT_WEIGHTS and not (adapter and p.name in _BASE_MODEL_FILES):
                os.replace(p, tmp / p.name)

    return atomic_write_dir(run_dir / ("adapter" if adapter else "model"), move)


def worker_result(trainer: Any, metrics_cb: Any, weights: str, t0: float) -> dict[str, Any]:
    """The same fields as the native backend's result (summary.json is built from them)."""
    state = trainer.state
    history = [r for r in state.log_history if "loss" in r]
    evals = [r for r in state.log_history if "eval_loss" in r]
    train_end = next((r for r in reversed(state.log_history) if "train_loss" in r), {})
    return {
        "train_loss": train_end.get("train_loss"),
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
        "eval_loss": evals[-1]["eval_loss"] if evals else None,
        "steps": state.global_step,
        "tokens": int(getattr(state, "num_input_tokens_seen", 0) or 0),
        "train_runtime_s": train_end.get("train_runtime"),
        "time_to_first_step_s": metrics_cb.first_step_s,
        "first_step_unix": metrics_cb.first_step_unix,
        "train_begin_unix": metrics_cb.train_begin_unix,
        "wall_s": time.perf_counter() - t0,
        "weights": weights,
        "world_size": trainer.args.world_size,
    }


def _plugin_class() -> type:
    from axolotl.integrations.base import BasePlugin

    class TuneforgeAxolotlPlugin(BasePlugin):
        """Adds tuneforge's metrics callback; after training, lays out the run directory like native."""

        def __init__(self) -> None:
            super().__init__()
            self.t0 = time.perf_counter()
            self.trainer: Any = None
            self.metrics_cb: Any = None

        def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list:
            from tuneforge.backends.hf_trainer import MetricsCallback

            run_dir = Path(cfg.output_dir).parent
            self.trainer = trainer
            if str(getattr(trainer.args, "eval_strategy", "no")) in ("no", "IntervalStrategy.NO"):
                # axolotl turns eval_on_start on whenever eval_strategy is set, even to "no"; the native
                # backend does not evaluate before training either
                trainer.args.eval_on_start = False
            self.metrics_cb = MetricsCallback(run_dir / "metrics.jsonl")
            from tuneforge.preemption import preemption_callbacks
            from tuneforge.rundir import read_config
            from tuneforge.training_guards import guard_callbacks  # NaN/zero-loss stop, checkpoint seals

            # the Slurm job's USR1 reaches axolotl's ranks too: they checkpoint and requeue like native ones
            return [self.metrics_cb, *preemption_callbacks(run_dir), *guard_callbacks(read_config(run_dir))]

        def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
            from tuneforge.checkpoints import latest_complete_checkpoint

            if cfg.resume_from_checkpoint is None:  # axolotl reads it right after this hook
                cfg.resume_from_checkpoint = latest_complete_checkpoint(Path(cfg.output_dir))

        def post_train(self, cfg: Any, model: Any) -> None:
            if int(os.environ.get("RANK", "0")) != 0 or self.trainer is None:
                return
            from tuneforge.rundir import atomic_write_json

            out_dir = Path(cfg.output_dir)
            run_dir = out_dir.parent
            adapter = bool(cfg.adapter)
            collect_weights(run_dir, out_dir, adapter)
            result = worker_result(self.trainer, self.metrics_cb, "adapter" if adapter else "model", self.t0)
            atomic_write_json(run_dir / "worker_result.json", result)
            log.info("tuneforge: %s", json.dumps({k: result[k] for k in ("first_loss", "last_loss", "steps")}))

    TuneforgeAxolotlPlugin.__module__ = __name__
    return TuneforgeAxolotlPlugin


def __getattr__(name: str) -> Any:
    # axolotl imports plugins by dotted name; the class subclasses axolotl's BasePlugin, so it is built on
    # first access (inside the axolotl process), keeping this module importable without axolotl
    if name == "TuneforgeAxolotlPlugin":
        cls = _plugin_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
