"""The axolotl backend: the run config becomes a native axolotl YAML (``<run_dir>/axolotl.yaml``), checked
by axolotl's own validator, trained by ``python -m axolotl.cli.train <run_dir>/axolotl.yaml`` under whatever
launcher the config names (accelerate starts one per GPU; the local launcher one process).

Translation (:func:`build_axolotl_config`) is a pure function of the run config and paths: no torch, no
axolotl import, so ``plan`` shows the YAML in milliseconds. axolotl is imported lazily in
:func:`validate_axolotl_config` (``prepare`` runs it before every launch) and inside the training process.

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

from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)

AXOLOTL_YAML = "axolotl.yaml"
PLUGIN = "tuneforge.backends.axolotl.TuneforgeAxolotlPlugin"
DEVICES = ("auto", "cpu", "cuda")
# files of axolotl's final save that belong to the run's weights directory (the rest stays in checkpoints/)
_NOT_WEIGHTS = {"debug.log"}
_BASE_MODEL_FILES = {"config.json", "generation_config.json"}  # written for full models; not part of an adapter


def on_cpu(run: RunConfig) -> bool:
    if run.backend.device != "auto":
        return run.backend.device == "cpu"
    from tuneforge.distributed.devices import runs_on_cpu

    return runs_on_cpu(run)


def model_path(run: RunConfig, *, build: bool = False) -> str:
    """axolotl's base_model: the tiny model's local directory (built only when ``build``), else the hub id."""
    from tuneforge.models import local_model_dir

    local = local_model_dir(run.model, build=build)
    return str(local) if local is not None else run.model.name_or_path


VAL_SUBSET = "val.subset.jsonl"  # hparams.max_eval_samples: the first N validation rows, in the run directory


def data_paths(run: RunConfig, *, prepare: bool = False, run_dir: Path | None = None) -> dict[str, Any]:
    """The prepared chat-JSONL splits (prepared only when ``prepare``; plan just names the cached files).

    With ``hparams.max_eval_samples`` the validation file is the run directory's ``val.subset.jsonl``
    (axolotl has no such key), written here when ``prepare``."""
    n = run.hparams.max_eval_samples
    if prepare:
        from tuneforge.data.prepare import prepare_splits

        data = prepare_splits(run.dataset)
        out = {"train": data.train, "val": data.val, "val_rows": data.sizes.get("val", 0)}
        if n is not None and run_dir is not None and out["val_rows"]:
            from tuneforge.rundir import atomic_write_text

            with Path(data.val).open(encoding="utf-8") as f:
                rows = [line for line in f if line.strip()][:n]
            atomic_write_text(Path(run_dir) / VAL_SUBSET, "".join(rows))
            out.update(val=Path(run_dir) / VAL_SUBSET, val_rows=len(rows))
        return out
    from tuneforge.data.prepare import prepared_dir

    d = prepared_dir(run.dataset)
    val = Path(run_dir) / VAL_SUBSET if n is not None and run_dir is not None else d / "val.jsonl"
    return {"train": d / "train.jsonl", "val": val, "val_rows": None}


def _precision(run: RunConfig, cpu: bool) -> dict[str, Any]:
    mp = run.hparams.mixed_precision
    if cpu or mp == "no":
        return {"bf16": False, "fp16": False, "tf32": False}
    if mp == "bf16":
        return {"bf16": True, "fp16": False, "tf32": True}
    if mp == "fp16":
        return {"bf16": False, "fp16": True, "tf32": True}
    return {"bf16": "auto", "tf32": "auto"}  # bf16 where the GPU has it (as the native backend's "auto")


def _dtype_problems(run: RunConfig) -> Iterable[str]:
    """axolotl has no load-dtype key: it loads the base in its training precision. (On CPU it trains in fp32
    whatever the dtype; the plan says so, and a GPU recipe must still plan on a CPU machine.)"""
    dtype, mp = run.model.dtype, run.hparams.mixed_precision
    half = {"bfloat16": "bf16", "float16": "fp16"}
    if dtype in half and (mp == "no" or (mp in half.values() and mp != half[dtype])):
        precision = f"hparams.mixed_precision={mp}"
        yield (f"model.dtype={dtype}: axolotl loads the base in its training precision, here {precision}; set "
               f"model.dtype to match (or auto), or choose the precision with hparams.mixed_precision")


def _chat_template(run: RunConfig) -> dict[str, Any]:
    name = run.model.chat_template
    if name == "tokenizer_default":
        return {"chat_template": "tokenizer_default"}
    from tuneforge.models import CHAT_TEMPLATES

    # tuneforge's own template text (with {% generation %} markers), so both backends format identically
    return {"chat_template": "jinja", "chat_template_jinja": CHAT_TEMPLATES[name]}


def _adapter(run: RunConfig) -> dict[str, Any]:
    m = run.method
    if m.name == "full":
        return {}
    q = m.quantization
    out: dict[str, Any] = {}
    if m.name == "qlora" and q.bits == 4:
        out.update({
            "adapter": "qlora",
            "load_in_4bit": True,
            # axolotl's defaults are nf4 + double quant + bf16 storage; say ours so both backends load alike
            "bnb_config_kwargs": {
                "bnb_4bit_quant_type": q.quant_type,
                "bnb_4bit_use_double_quant": q.double_quant,
                "bnb_4bit_compute_dtype": q.compute_dtype,
                "bnb_4bit_quant_storage": q.compute_dtype,
            },
        })
    elif m.name == "qlora" and q.bits == 8:
        out.update({"adapter": "lora", "load_in_8bit": True})  # axolotl's qlora is 4-bit only
    else:
        out["adapter"] = "lora"
    out.update({
        "lora_r": m.r,
        "lora_alpha": m.alpha,
        "lora_dropout": m.dropout,
        "lora_target_modules": list(m.target_modules),
    })
    if m.modules_to_save:
        out["lora_modules_to_save"] = list(m.modules_to_save)
    if m.use_rslora:
        out["peft_use_rslora"] = True
    if m.layers_to_transform is not None:
        from tuneforge.estimate import known_layer_count
        from tuneforge.strategies.registry import adapted_layers

        out["peft_layers_to_transform"] = adapted_layers(m.layers_to_transform, known_layer_count(run))
    return out


def build_axolotl_config(run: RunConfig, run_dir: Path, *, base_model: str | None = None,
                         data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The axolotl YAML (as a dict) for this run. Pure: no torch, no axolotl, no file access."""
    from tuneforge.distributed.deepspeed import DS_CONFIG_NAME, uses_deepspeed

    h, o, m, b = run.hparams, run.optim, run.model, run.backend
    cpu = on_cpu(run)
    data = data or data_paths(run, run_dir=Path(run_dir))
    run_dir = Path(run_dir)
    dataset = {"path": str(data["train"]), "ds_type": "json", "type": "chat_template",
               "field_messages": "messages", "split": "train"}
    if not b.train_on_inputs:  # the loss covers assistant turns and their end-of-turn token, for any template
        dataset.update(roles_to_train=["assistant"], train_on_eos="turn")
    cfg: dict[str, Any] = {
        "base_model": base_model or model_path(run),
        "model_type": "AutoModelForCausalLM",
        "tokenizer_type": "AutoTokenizer",
        "trust_remote_code": m.trust_remote_code,
    }
    if m.revision:
        cfg["revision_of_model"] = m.revision
    if m.tokenizer:
        cfg["tokenizer_config"] = m.tokenizer
    cfg.update(_adapter(run))
    cfg.update({
        "datasets": [dataset],
        **_chat_template(run),
        "train_on_inputs": b.train_on_inputs,
        "dataset_prepared_path": b.dataset_prepared_path or str(run_dir / "axolotl_prepared"),
        "sequence_len": h.seq_len,
        "sample_packing": h.packing,
        "eval_sample_packing": False,  # small eval splits cannot fill packed bins
        "pad_to_sequence_len": h.packing,
        "micro_batch_size": h.micro_batch_size,
        "eval_batch_size": h.micro_batch_size,
        "gradient_accumulation_steps": h.grad_accumulation,
        "num_epochs": h.epochs,
        "optimizer": o.optimizer,
        "learning_rate": o.lr,
        "lr_scheduler": o.scheduler,
        "weight_decay": o.weight_decay,
        "max_grad_norm": o.max_grad_norm,
        "adam_beta1": o.adam_beta1,
        "adam_beta2": o.adam_beta2,
        "adam_epsilon": o.adam_epsilon,
        **_precision(run, cpu),
        "gradient_checkpointing": h.gradient_checkpointing,
        "dataloader_num_workers": h.dataloader_num_workers,
        "attn_implementation": m.attn_implementation,
        "seed": h.seed,
        "logging_steps": h.logging_steps,
        "include_tokens_per_second": True,  # the Trainer counts input tokens: metrics.jsonl's tokens/tokens_per_s
        "save_strategy": "steps" if h.save_steps else "no",
        "save_total_limit": h.save_total_limit,
        "save_safetensors": True,
        "output_dir": str(run_dir / "checkpoints"),
        # axolotl's auto-resume takes the highest-numbered checkpoint, torn or not: the plugin resumes from the
        # latest *complete* one instead (tuneforge.checkpoints), as the native backend does
        "auto_resume_from_checkpoints": False,
        "plugins": [PLUGIN],
    })
    if h.max_steps > 0:
        cfg["max_steps"] = h.max_steps
    if o.warmup_steps:
        cfg["warmup_steps"] = o.warmup_steps
    else:
        cfg["warmup_ratio"] = o.warmup_ratio
    if h.save_steps:
        cfg["save_steps"] = h.save_steps
    if run.dataset.split.val > 0 and data.get("val_rows") != 0:
        cfg["test_datasets"] = [{**dataset, "path": str(data["val"])}]
        cfg["val_set_size"] = 0.0
        cfg["eval_strategy"] = "steps" if h.eval_steps else "no"
        if h.eval_steps:
            cfg["eval_steps"] = h.eval_steps
    else:
        cfg["val_set_size"] = 0.0
        cfg["eval_strategy"] = "no"
    if b.dataset_processes:
        cfg["dataset_processes"] = b.dataset_processes
    if uses_deepspeed(run):
        cfg["deepspeed"] = str(run_dir / DS_CONFIG_NAME)
    if cpu:
        # axolotl auto-enables fused LoRA kernels that allocate on CUDA; off on CPU (checked on axolotl 0.19)
        cfg.update({"lora_mlp_kernel": False, "lora_qkv_kernel": False, "lora_o_kernel": False,
                    "lora_embedding_kernel": False})
    t = run.tracking
    if t.name == "wandb":
        cfg.update({"wandb_project": t.project, "wandb_mode": t.mode, "wandb_name": run.name})
        if t.entity:
            cfg["wandb_entity"] = t.entity
    elif t.name == "tensorboard":
        cfg["use_tensorboard"] = True
    if run.objective.is_preference:  # rl: dpo|ipo|simpo on the prepared pairs (tuneforge.backends.axolotl_rl)
        from tuneforge.backends.axolotl_rl import rl_settings

        cfg.update(rl_settings(run, {k: v for k, v in data.items() if k != "val" or "test_datasets" in cfg}))
    from tuneforge.backends.escape_hatch import merge_hatch  # a hatch `plugins` list extends tuneforge's

    return merge_hatch(cfg, dict(b.additional_parameters))


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


class AxolotlBackend:
    name = "axolotl"
    hosted = False
    objectives = ("sft", "dpo")  # objective=... it trains (tuneforge.schema.objective)

    def check(self, run: RunConfig) -> Iterable[str]:
        from tuneforge.models import CHAT_TEMPLATES

        b, m = run.backend, run.method
        if b.device not in DEVICES:
            yield f"backend.device={b.device!r} is not valid; choose one of: {', '.join(DEVICES)}"
        if run.model.chat_template not in ("tokenizer_default", *CHAT_TEMPLATES):
            yield (f"model.chat_template={run.model.chat_template!r} is not known; "
                   f"choose one of: tokenizer_default, {', '.join(CHAT_TEMPLATES)}")
        if m.name != "full" and m.bias != "none":
            yield (f"method.bias={m.bias!r}: axolotl trains LoRA without bias terms; use method.bias=none, "
                   "or backend=native")
        if on_cpu(run) and run.model.attn_implementation.startswith("flash_attention"):
            yield (f"model.attn_implementation={run.model.attn_implementation} needs a CUDA GPU, but this run "
                   "is on CPU; use model.attn_implementation=sdpa")
        from tuneforge.backends.coverage import check_unsupported
        from tuneforge.backends.escape_hatch import check_axolotl_hatch

        yield from check_axolotl_hatch(run)
        yield from check_unsupported(run, "axolotl")  # a setting axolotl cannot honour is refused, not dropped
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
