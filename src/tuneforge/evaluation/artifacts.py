"""A finished run's artifacts: its config, tokenizer, adapter or full model, and the base they belong to.

Shared by ``eval``, ``merge`` and ``chat``. Only the run-directory layout is used (config.yaml, adapter/ or
model/, merged/), so it does not matter which backend trained. An adapter is checked before it is trusted:
readable config and weights, trained on this run's base (name and tensor shapes), otherwise
:class:`~tuneforge.errors.RunArtifactError` with a one-line reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import RunArtifactError
from tuneforge.schema.run import RunConfig

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class RunArtifacts:
    run_dir: Path
    run: RunConfig
    weights: Path  # adapter/ or model/
    uses_adapter: bool

    @property
    def merged(self) -> Path:
        return self.run_dir / "merged"

    @property
    def is_qlora(self) -> bool:
        return self.uses_adapter and self.run.method.quantization.bits is not None


def open_run(run_dir: Path | str, base: str | None = None) -> RunArtifacts:
    """Read ``<run_dir>/config.yaml`` and find the final weights; refuse a run that has none.

    ``base``: a hub id or local directory that replaces the run's base model (moved weights, a local mirror,
    or the cached tiny model a run was trained on after the tiny model's build inputs changed)."""
    from tuneforge.rundir import read_config, weights_dir

    run_dir = Path(run_dir).expanduser().resolve()
    if not (run_dir / "config.yaml").is_file():
        from tuneforge.runs import recent_runs_hint

        raise RunArtifactError(f"run={run_dir}: not a run directory (no config.yaml)\n{recent_runs_hint()}")
    try:
        run = read_config(run_dir)
    except Exception as exc:  # noqa: BLE001 - OmegaConf/YAML raise many types; each is a bad config.yaml
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunArtifactError(f"{run_dir / 'config.yaml'}: not a readable run config ({first})") from None
    if base:
        run.model.name_or_path, run.model.tiny, run.model.package = base, None, None
    if run.model.init == "random":
        raise RunArtifactError(f"run={run_dir} was trained from random weights (model.init=random): a speed and "
                               "memory check, not a model; eval, merge and chat have nothing to say about it")
    weights = weights_dir(run_dir)
    if not weights.is_dir():
        state = "is still training or was killed (RUNNING present)" if (run_dir / "RUNNING").exists() else (
            "failed (see FAILED)" if (run_dir / "FAILED").exists() else "has no final weights")
        raise RunArtifactError(f"run={run_dir}: no adapter/ or model/ directory: the run {state}")
    return RunArtifacts(run_dir, run, weights, uses_adapter=weights.name == "adapter")


# --- adapter checks -----------------------------------------------------------------------------------------

def adapter_config(art: RunArtifacts) -> dict[str, Any]:
    path = art.weights / "adapter_config.json"
    if not path.is_file():
        raise RunArtifactError(f"{path}: missing: the adapter is incomplete")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunArtifactError(f"{path}: corrupted (not valid JSON: {exc})") from None
    if not isinstance(cfg, dict) or "peft_type" not in cfg:
        raise RunArtifactError(f"{path}: not a PEFT adapter config (no peft_type)")
    return cfg


def adapter_tensors(art: RunArtifacts) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the adapter's tensors, from the safetensors header (also detects corruption)."""
    from safetensors import safe_open

    path = art.weights / ADAPTER_WEIGHTS
    if not path.is_file():
        raise RunArtifactError(f"{path}: missing: the adapter has no weights")
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a bad header
        raise RunArtifactError(f"{path}: corrupted or truncated ({str(exc).splitlines()[0]})") from None
    if not shapes:
        raise RunArtifactError(f"{path}: holds no tensors")
    return shapes


def _same_base(trained_on: str, expected: str) -> bool:
    """Equal ids/paths, the same directory name (a tiny model's cache key, a copied local model), or a hub
    id and a hub-cache snapshot path of that id."""
    if not trained_on or trained_on == expected:
        return True
    a, b = Path(trained_on), Path(expected)
    if a.name and a.name == b.name:
        return True
    for hub_id, path in ((trained_on, expected), (expected, trained_on)):
        if hub_id.count("/") == 1 and f"models--{hub_id.replace('/', '--')}" in path:
            return True
    return False


def check_adapter_base(art: RunArtifacts) -> dict[str, Any]:
    """Refuse an adapter whose recorded base is not this run's base model. Returns the adapter config."""
    from tuneforge.models import resolve_model_path

    cfg = adapter_config(art)
    trained_on = str(cfg.get("base_model_name_or_path") or "")
    expected = resolve_model_path(art.run.model)
    if not _same_base(trained_on, expected):
        hint = (f"; if {trained_on} is the right base, pass base={trained_on}"
                if Path(trained_on).is_dir() else "; pass base=<hub id or directory> to name the right base")
        raise RunArtifactError(
            f"{art.weights / 'adapter_config.json'}: base_model_name_or_path={trained_on!r} does not match "
            f"the run's base model {expected!r} (model.name_or_path={art.run.model.name_or_path!r}); "
            f"refusing to apply an adapter to a different base{hint}"
        )
    return cfg


def check_adapter_shapes(art: RunArtifacts, base: Any) -> None:
    """Every LoRA tensor must target an existing module with matching in/out features."""
    shapes = adapter_tensors(art)
    bad: list[str] = []
    for key, shape in shapes.items():
        for part, dim_index, attr in ((".lora_A.", 1, "in_features"), (".lora_B.", 0, "out_features")):
            if part not in key:
                continue
            module_name = key.split(part)[0].removeprefix("base_model.model.")
            try:
                module = base.get_submodule(module_name)
            except AttributeError:
                bad.append(f"{module_name} (no such module in the base)")
                continue
            want = getattr(module, attr, None)
            if want is not None and len(shape) == 2 and shape[dim_index] != want:
                bad.append(f"{key} has shape {list(shape)} but the base's {module_name}.{attr}={want}")
    if bad:
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        raise RunArtifactError(
            f"{art.weights / ADAPTER_WEIGHTS}: does not fit the run's base model: {bad[0]}{more}; "
            "the adapter was trained on a different base"
        )


# --- loading ------------------------------------------------------------------------------------------------

def device() -> Any:
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def load_run_tokenizer(art: RunArtifacts, path: Path | None = None) -> Any:
    """The tokenizer saved with the weights (it carries the chat template the run trained with)."""
    from tuneforge.models import load_tokenizer

    src = path or art.weights
    return load_tokenizer(art.run, path=str(src) if (src / "tokenizer_config.json").is_file() else None)


def load_base(art: RunArtifacts, *, dequantized: bool = False) -> Any:
    """The base model as the run trained on it: 4/8-bit for QLoRA (or de-quantized to the base dtype when
    ``dequantized``, for merging), otherwise in the configured dtype."""
    from tuneforge.models import load_model, torch_dtype
    from tuneforge.strategies.registry import get_strategy

    if art.run.init.run is not None:  # started from an earlier run: its weights are this run's base
        from tuneforge.backends.preference import merged_parent

        return merged_parent(Path(art.run.init.run)).to(device()).eval()
    strategy = get_strategy(art.run)
    quant = strategy.quantization_config(art.run) if art.is_qlora else None
    if quant is None:
        return load_model(art.run).to(device()).eval()
    model = load_model(art.run, quantization_config=quant, device_map={"": device()})
    if dequantized:
        # the adapter learned against dequant(quant(W)), so that (not the original W) is what it merges into
        model = model.dequantize().to(torch_dtype(art.run))
    return model.eval()


def attach_adapter(art: RunArtifacts, base: Any) -> Any:
    """base + adapter/ after the checks above; a load failure becomes a RunArtifactError naming the file."""
    from peft import PeftModel

    check_adapter_base(art)
    check_adapter_shapes(art, base)
    try:
        model = PeftModel.from_pretrained(base, str(art.weights), is_trainable=False)
    except Exception as exc:  # noqa: BLE001 - whatever PEFT raises, the adapter directory is unusable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunArtifactError(f"{art.weights}: cannot be loaded as a PEFT adapter ({first})") from None
    return model.eval()


def load_full_model(path: Path, run: RunConfig) -> Any:
    """A complete fine-tuned model (model/ of a full fine-tune, or merged/)."""
    from transformers import AutoModelForCausalLM

    from tuneforge.models import torch_dtype

    if not (path / "config.json").is_file():
        raise RunArtifactError(f"{path}: no config.json: not a saved model")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(run))
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, safetensors errors: the directory is unusable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunArtifactError(f"{path}: cannot be loaded ({first})") from None
    return model.to(device()).eval()


def load_finetuned(art: RunArtifacts, *, prefer_merged: bool = False) -> tuple[Any, str]:
    """The fine-tuned model and a description of what was loaded."""
    if prefer_merged and (art.merged / "config.json").is_file():
        return load_full_model(art.merged, art.run), f"merged model {art.merged}"
    if not art.uses_adapter:
        return load_full_model(art.weights, art.run), f"full fine-tune {art.weights}"
    base = load_base(art)
    what = "4-bit" if art.run.method.quantization.bits == 4 else "8-bit" if art.is_qlora else ""
    return attach_adapter(art, base), f"adapter {art.weights} on the {what + ' ' if what else ''}base"
