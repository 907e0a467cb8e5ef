"""Fine-tuning strategies: what is trainable and how the base model is loaded.

A strategy is a small object with ``check(run)`` (config compatibility) and ``build(run, model)`` (wrap or
prepare a loaded model). Loading itself is shared (:func:`tuneforge.models.load_model`), with the strategy's
``quantization`` deciding the bitsandbytes config. torch/peft are imported inside methods only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tuneforge.schema.components import Strategy
from tuneforge.schema.run import RunConfig


def lora_config(run: RunConfig, num_layers: int | None = None) -> Any:
    from peft import LoraConfig

    m = run.method
    return LoraConfig(
        r=m.r,
        lora_alpha=m.alpha,
        lora_dropout=m.dropout,
        target_modules=list(m.target_modules),
        bias=m.bias,
        modules_to_save=list(m.modules_to_save) if m.modules_to_save else None,
        use_rslora=m.use_rslora,
        layers_to_transform=adapted_layers(m.layers_to_transform, num_layers),
        task_type="CAUSAL_LM",
    )


def adapted_layers(layers: list[int] | None, num_layers: int | None) -> list[int] | None:
    """``method.layers_to_transform`` as PEFT/axolotl take it: sorted, non-negative layer indices (or None).

    Negative entries count from the top, which needs the model's layer count.
    """
    if layers is None:
        return None
    if any(i < 0 for i in layers):
        if num_layers is None:
            from tuneforge.errors import ConfigError

            raise ConfigError(f"method.layers_to_transform={list(layers)} counts from the top, but the number "
                              "of layers of this model is not known; give 0-based indices")
        layers = [i + num_layers if i < 0 else i for i in layers]
    return sorted({int(i) for i in layers})


def _lora_checks(run: RunConfig) -> Iterable[str]:
    m = run.method
    if m.r < 1:
        yield f"method.r={m.r} must be a positive integer (LoRA rank; typical 8..64)"
    if m.alpha <= 0:
        yield f"method.alpha={m.alpha} must be > 0 (typical: 2 x method.r)"
    if not 0 <= m.dropout < 1:
        yield f"method.dropout={m.dropout} must be in [0, 1)"
    if not m.target_modules:
        yield "method.target_modules is empty: name the linear layers to adapt (e.g. [q_proj, v_proj])"
    if m.bias not in ("none", "all", "lora_only"):
        yield f"method.bias={m.bias!r} is not valid; choose one of: none, all, lora_only"


def _qlora_under_deepspeed(run: RunConfig) -> Iterable[str]:
    """What ZeRO can do with bitsandbytes weights."""
    d, q = run.distributed, run.method.quantization
    if d.offload_params:
        yield (f"method=qlora with distributed={d.name}: 4-bit bitsandbytes weights cannot be offloaded to "
               "the CPU by ZeRO-3; use distributed=zero2 or distributed=zero3")
    if d.zero_stage == 3 and q.bits == 8:
        yield "method=qlora with 8-bit weights cannot be sharded by ZeRO-3; use quantization.bits=4 or zero2"
    if d.zero_stage == 3 and q.compute_dtype not in ("bfloat16", "float16"):
        yield (f"method=qlora under ZeRO-3 stores the 4-bit weights as method.quantization.compute_dtype="
               f"{q.compute_dtype}, which ZeRO-3 cannot shard with the 16-bit parameters; set "
               "method.quantization.compute_dtype=bfloat16")


@dataclass(frozen=True)
class FullStrategy:
    name: str = "full"
    uses_adapter: bool = False

    def check(self, run: RunConfig) -> Iterable[str]:
        if run.method.quantization.bits is not None:
            yield ("method.quantization.bits is set but method=full trains every weight, and quantized "
                   "weights cannot be trained; use method=qlora, or set method.quantization.bits=null")

    def quantization_config(self, run: RunConfig) -> Any:
        return None

    def build(self, run: RunConfig, model: Any) -> Any:
        for p in model.parameters():
            p.requires_grad_(True)
        return model


@dataclass(frozen=True)
class LoRAStrategy:
    name: str = "lora"
    uses_adapter: bool = True

    def check(self, run: RunConfig) -> Iterable[str]:
        yield from _lora_checks(run)
        if run.method.quantization.bits is not None:
            yield "method=lora loads the base unquantized; for a quantized base use method=qlora"

    def quantization_config(self, run: RunConfig) -> Any:
        return None

    def build(self, run: RunConfig, model: Any) -> Any:
        from peft import get_peft_model

        if run.hparams.gradient_checkpointing:
            model.enable_input_require_grads()
        return get_peft_model(model, lora_config(run, model.config.num_hidden_layers))


@dataclass(frozen=True)
class QLoRAStrategy:
    name: str = "qlora"
    uses_adapter: bool = True

    def check(self, run: RunConfig) -> Iterable[str]:
        yield from _lora_checks(run)
        q = run.method.quantization
        if q.bits not in (4, 8):
            yield f"method.quantization.bits={q.bits} is not valid for qlora; choose one of: 4, 8"
        if q.bits == 4 and q.quant_type not in ("nf4", "fp4"):
            yield f"method.quantization.quant_type={q.quant_type!r} is not valid; choose one of: nf4, fp4"
        if q.compute_dtype not in ("float32", "bfloat16", "float16"):
            yield (f"method.quantization.compute_dtype={q.compute_dtype!r} is not valid; "
                   "choose one of: float32, bfloat16, float16")
        yield from _qlora_under_deepspeed(run)
        if run.model.tiny is not None and run.model.tiny.hidden_size % 64:
            yield (f"model.tiny.hidden_size={run.model.tiny.hidden_size} cannot be quantized to 4 bits "
                   "(bitsandbytes packs blocks of 64); use a multiple of 64")

    def quantization_config(self, run: RunConfig) -> Any:
        import torch
        from transformers import BitsAndBytesConfig

        q = run.method.quantization
        compute = getattr(torch, q.compute_dtype)
        if q.bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_quant_storage=compute,
        )

    def build(self, run: RunConfig, model: Any) -> Any:
        from peft import get_peft_model, prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=run.hparams.gradient_checkpointing
        )
        return get_peft_model(model, lora_config(run, model.config.num_hidden_layers))


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (FullStrategy(), LoRAStrategy(), QLoRAStrategy())}


def get_strategy(run: RunConfig) -> Strategy:
    return STRATEGIES[run.method.name]
