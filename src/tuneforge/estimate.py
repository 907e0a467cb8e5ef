"""A first estimate of GPU memory per process, from the config alone (no torch, no weights): ``plan`` shows it.

    total = weights + gradients + optimizer states + activations + logits + overhead     (per GPU)

Sources of the formulas (Ψ = parameters, N = data-parallel processes):
- Weights: Ψ x bytes of the load dtype (2 for bf16/fp16, 4 for fp32). QLoRA's NF4 with double quantization
  stores 4.127 bits per quantized parameter (Dettmers et al., 2023, "QLoRA", sec. 3: 4-bit + 0.127 bits of
  quantization constants); embeddings and lm_head stay in the compute dtype. 8-bit: 1 byte + 1 fp32 scale per
  row (negligible).
- Gradients and Adam states (Rajbhandari et al., 2020, "ZeRO", sec. 3.1): mixed-precision Adam holds 2Ψ of
  16-bit weights, 2Ψ of 16-bit gradients and KΨ = 12Ψ of fp32 master weights, momentum and variance: 16 bytes
  per trainable parameter. Without DeepSpeed, torch's AdamW keeps momentum and variance in the parameter's
  dtype (2 x the weight bytes) and no master copy; 8-bit optimizers keep 2 bytes (Dettmers et al., 2022).
  LoRA adapters are trained in fp32 (PEFT upcasts them): 4 + 4 + 8 = 16 bytes per adapter parameter.
- ZeRO partitioning (same paper, fig. 1): stage 1 divides optimizer states by N, stage 2 also gradients,
  stage 3 also weights. Offload moves the optimizer states (and with them the fp32 gradients' update) or the
  parameters to CPU memory; ZeRO-3 then keeps about two layers of parameters on the GPU.
- Activations (Korthikanti et al., 2022, "Reducing Activation Recomputation in Large Transformer Models",
  eq. 1, no tensor/sequence parallelism): s·b·h·(34 + 5·a·s/h) bytes per layer for 16-bit activations;
  fused attention (SDPA/flash) does not keep the a·s² score matrix, leaving 34·s·b·h. With full activation
  checkpointing only each layer's input is kept (2·s·b·h per layer) plus one layer's activations being
  recomputed during backward. fp32 activations double these.
- Logits: s·b·V of 16-bit logits, their fp32 upcast for the loss and its fp32 gradient: 10 bytes x s·b·V.
- ZeRO buffers (DeepSpeed ``runtime/zero/stage3.py`` and its ``estimate_zero3_model_states_mem_needs``):
  ZeRO-3 keeps up to ``stage3_max_live_parameters`` gathered 16-bit parameters on the GPU (1e9 in our
  ds_config.json: 2 GB in bf16), plus the ``stage3_prefetch_bucket_size`` being fetched ("auto" = 0.9·h²), and
  the largest layer's 16-bit gradient before it is reduce-scattered (the embedding / lm_head for Llama).
  The optimizer step upcasts the gradient partition to fp32, ``sub_group_size`` parameters at a time
  (ZeRO-3) or the whole partition Ψ/N (ZeRO-1/2): 4 bytes per parameter, on the GPU unless the optimizer
  is offloaded.
- Allocator fragmentation: PyTorch's caching allocator reserves more than it hands out. 10 % of the
  allocations; 30 % with ZeRO-3, whose gather/release of differently sized buffers fragments most (GMLake,
  Guo et al., ASPLOS 2024, measured up to ~30 % with ZeRO-3 + offload + recomputation).
- CUDA context, kernels and NCCL buffers: ~1 GiB.

Checked against reports (tests/launch/test_estimate.py): LLaMA-Factory #5977 (full Llama-3-8B, ZeRO-3,
8x24 GB: out of memory; ~13 GB/GPU with offload) and #6531 (LoRA Llama-3.1-8B, ZeRO-3, 4x45 GB, 15,000
tokens: micro batch 1 fits, 2 does not).

It is a first estimate (±20-30 % is typical): packing, attention kernels and allocator behaviour move it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tuneforge.schema.run import RunConfig
from tuneforge.schema.shapes import KNOWN_SHAPES, Shape  # noqa: F401 - plan's table lives on the ground floor
from tuneforge.strategies.registry import get_strategy

GiB = 1024**3
OVERHEAD_BYTES = 1.0 * GiB
FRAGMENTATION = 0.10
FRAGMENTATION_ZERO3 = 0.30
# what build_ds_config writes for ZeRO-3 (DeepSpeed's defaults too)
ZERO3_MAX_LIVE_PARAMETERS = 1_000_000_000
ZERO3_SUB_GROUP_SIZE = 1_000_000_000
NF4_DQ_BYTES = 4.127 / 8


def model_shape(run: RunConfig) -> tuple[Shape, bool]:
    """(shape, exact): from model.tiny, the known table, or guessed from model.num_parameters."""
    m = run.model
    if m.tiny is not None:
        t = m.tiny
        return Shape(t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads,
                     t.intermediate_size, t.vocab_size), True
    if m.name_or_path in KNOWN_SHAPES:
        return KNOWN_SHAPES[m.name_or_path], True
    # unknown model: a Llama-like shape with the configured parameter count (h from Ψ ≈ 12·L·h²)
    params = m.num_parameters or 7e9
    layers = 32
    hidden = int(math.sqrt(params / (12 * layers)) // 128 * 128) or 128
    return Shape(hidden, layers, max(1, hidden // 128), max(1, hidden // 512), int(hidden * 3.5), 32000), False


def known_layer_count(run: RunConfig) -> int | None:
    """The model's number of decoder layers where its shape is exactly known (tiny or the table), else None."""
    shape, exact = model_shape(run)
    return shape.layers if exact else None


def adapted_layer_count(run: RunConfig, shape: Shape) -> int:
    """How many decoder layers carry a LoRA adapter (``method.layers_to_transform``; all by default)."""
    layers = run.method.layers_to_transform
    if layers is None:
        return shape.layers
    return len({i % shape.layers for i in layers}) if shape.layers else 0


def _dtype_bytes(name: str) -> int:
    return 4 if name == "float32" else 2


def load_dtype_bytes(run: RunConfig) -> int:
    d = run.model.dtype
    if d == "auto":  # bf16 on a GPU (the estimate is for GPUs)
        return 2
    return _dtype_bytes(d)


def lora_parameters(run: RunConfig, shape: Shape) -> int:
    r = run.method.r
    shapes = shape.linear_shapes()
    per_layer = sum(r * (i + o) for name, (i, o) in shapes.items() if name in run.method.target_modules)
    return per_layer * adapted_layer_count(run, shape)


@dataclass
class MemoryEstimate:
    """Bytes per GPU by component, plus what the numbers assume."""

    parameters: float
    trainable: float
    processes: int
    components: dict[str, float]
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cpu_offload_bytes: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.components.values())

    @property
    def total_gib(self) -> float:
        return self.total / GiB

    def as_dict(self) -> dict[str, Any]:
        return {"per_gpu_gib": round(self.total_gib, 2),
                "components_gib": {k: round(v / GiB, 3) for k, v in self.components.items()},
                "parameters": int(self.parameters), "trainable_parameters": int(self.trainable),
                "processes": self.processes, "cpu_offload_gib": round(self.cpu_offload_bytes / GiB, 2),
                "assumptions": self.assumptions, "warnings": self.warnings}

    def render(self) -> str:
        lines = [(f"parameters {self.parameters / 1e9:.3g} B, trainable {self.trainable / 1e6:.4g} M "
                  f"({100 * self.trainable / max(self.parameters, 1):.2f} %), {self.processes} process(es)")]
        width = max(len(k) for k in self.components)
        for k, v in self.components.items():
            lines.append(f"  {k:<{width}}  {v / GiB:9.3f} GiB")
        lines.append(f"  {'total per GPU':<{width}}  {self.total_gib:9.3f} GiB")
        if self.cpu_offload_bytes:
            lines.append(f"  (offloaded to CPU memory per process: {self.cpu_offload_bytes / GiB:.2f} GiB)")
        lines += [f"  assumes: {a}" for a in self.assumptions]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def estimate_memory(run: RunConfig) -> MemoryEstimate:
    from tuneforge.distributed.deepspeed import world_size

    m, h, d = run.method, run.hparams, run.distributed
    shape, exact = model_shape(run)
    params = float(run.model.num_parameters or shape.num_parameters())
    n = world_size(run)
    stage = d.zero_stage or 0
    w_bytes = load_dtype_bytes(run)
    notes: list[str] = []
    if not exact:
        notes.append(f"shape of {run.model.name_or_path} guessed from its parameter count (add it to "
                     "tuneforge.schema.shapes.KNOWN_SHAPES for exact activations)")

    # weights
    embed = shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)
    if m.quantization.bits == 4:  # only a quantizing method accepts bits
        compute = _dtype_bytes(m.quantization.compute_dtype)
        weights = (params - embed) * NF4_DQ_BYTES + embed * compute
        notes.append("base in NF4 + double quantization (4.127 bits/param); embeddings in the compute dtype")
    elif m.quantization.bits == 8:
        weights = (params - embed) * 1 + embed * w_bytes
    else:
        weights = params * w_bytes

    # trainable parameters, gradients, optimizer states
    optimizer = run.optim.optimizer
    eight_bit = "8bit" in optimizer
    if not get_strategy(run).uses_adapter:
        trainable = params
        grad_b = w_bytes
        if stage or d.offload_optimizer:
            opt_b = 12.0  # ZeRO paper: fp32 master weights + momentum + variance (K = 12)
        elif eight_bit:
            opt_b = 2.0
        else:
            opt_b = 2.0 * w_bytes
    else:
        trainable = float(lora_parameters(run, shape))
        grad_b = 4
        opt_b = 2.0 if eight_bit else 8.0
        weights += trainable * 4  # the fp32 adapter weights themselves
    grads = trainable * grad_b
    opt = trainable * opt_b

    cpu = 0.0
    if stage >= 1:
        opt /= n
    if stage >= 2:
        grads /= n
    if stage >= 3:
        weights /= n
    if d.offload_optimizer:
        cpu += opt + grads
        opt, grads = 0.0, 0.0
        notes.append("optimizer states and their fp32 gradients live in CPU memory (ZeRO-Offload)")
    if d.offload_params:
        resident = min(weights, 2 * weights * n / max(shape.layers, 1))  # ~2 unsharded layers prefetched
        cpu += weights - resident
        weights = resident
        notes.append("parameters offloaded to CPU memory; ~2 layers resident on the GPU")

    # activations (Korthikanti et al. 2022) and logits
    s, b, hid, layers, heads = h.seq_len, h.micro_batch_size, shape.hidden, shape.layers, shape.heads
    if run.objective.name in ("dpo", "orpo"):  # each pair is two sequences in one forward: chosen + rejected
        b *= 2
        notes.append(f"objective={run.objective.name}: a micro-batch of {h.micro_batch_size} pairs is {b} sequences")
    act_scale = 2.0 if (run.model.dtype == "float32" and h.mixed_precision in ("no", "auto")
                        and run.model.tiny is not None) else 1.0
    fused_attention = run.model.attn_implementation in ("sdpa", "flash_attention_2", "flash_attention_3")
    per_layer = s * b * hid * (34 + (0 if fused_attention else 5 * heads * s / hid))
    if h.gradient_checkpointing:
        activations = (layers * 2 * s * b * hid + per_layer) * act_scale
        notes.append("activation checkpointing: layer inputs kept, one layer recomputed at a time")
    else:
        activations = layers * per_layer * act_scale
    if not fused_attention:
        notes.append(f"attn_implementation={run.model.attn_implementation} keeps the attention scores (5·a·s/h term)")
    logits = 10.0 * s * b * shape.vocab

    comps = {"weights": weights, "gradients": grads, "optimizer states": opt, "activations": activations,
             "logits": logits}
    comps.update(_reference_model(run, weights, s * b * shape.vocab, notes))
    comps.update(_zero_buffers(run, shape, params, trainable, n, w_bytes, notes))
    frag = FRAGMENTATION_ZERO3 if stage >= 3 else FRAGMENTATION
    comps[f"allocator fragmentation ({frag:.0%})"] = frag * sum(comps.values())
    comps["CUDA context + NCCL"] = OVERHEAD_BYTES
    est = MemoryEstimate(parameters=params, trainable=trainable, processes=n, components=comps,
                         assumptions=notes, cpu_offload_bytes=cpu)
    if get_strategy(run).uses_adapter and trainable > params:
        est.warnings.append(f"the adapter ({trainable / 1e6:.4g} M parameters, {trainable * 4 / 2**20:.0f} MiB in "
                            f"fp32) is larger than the base model ({params / 1e6:.4g} M): method.r={run.method.r} "
                            "is far beyond a useful LoRA rank (typical: 8..64)")
    from tuneforge.schema.gpu import target_memory_gb

    limit, source = target_memory_gb(run)
    if limit is not None and est.total_gib > limit:
        hint = _hint(run)
        est.warnings.append(f"estimated {est.total_gib:.1f} GiB per GPU exceeds {source} ({limit:g} GiB)"
                            + (f"; {hint}" if hint else ""))
    return est


def _reference_model(run: RunConfig, weights: float, logit_count: float, notes: list[str]) -> dict[str, float]:
    """What the preference objective's reference model costs (tuneforge.backends.preference): nothing to hold
    with an adapter (the reference is the same weights with the adapter off) or precomputed log-probs; a frozen
    copy of the weights for a full fine-tune. Its forward pass, without gradients, adds its logits."""
    o = run.objective
    if not o.needs_reference:
        if o.is_preference:
            notes.append(f"objective={o.name} (loss {o.loss}): no reference model")
        return {}
    if o.reference == "precomputed":
        notes.append("reference log-probs precomputed before training: no reference model in memory")
        return {}
    forward = 6.0 * logit_count  # 16-bit logits + their fp32 log-softmax, no gradient
    if get_strategy(run).uses_adapter:
        notes.append("reference model: none loaded; with an adapter the reference is the same weights with the "
                     "adapter switched off (TRL), i.e. the starting weights")
        return {"reference forward (logits)": forward}
    notes.append("reference model: a frozen copy of the starting weights (full fine-tune)")
    return {"reference model (frozen copy)": weights, "reference forward (logits)": forward}


def _zero_setting(run: RunConfig, key: str, default: Any) -> Any:
    """A zero_optimization value of ds_config.json, as distributed.additional_parameters may override it."""
    value = (run.distributed.additional_parameters.get("zero_optimization") or {}).get(key, default)
    return default if value == "auto" else value


def _zero_buffers(run: RunConfig, shape: Shape, params: float, trainable: float, n: int, w_bytes: int,
                  notes: list[str]) -> dict[str, float]:
    """DeepSpeed's working buffers beyond the partitioned states (see the module docstring)."""
    d = run.distributed
    stage = d.zero_stage or 0
    out: dict[str, float] = {}
    if stage >= 3:
        live = min(float(_zero_setting(run, "stage3_max_live_parameters", ZERO3_MAX_LIVE_PARAMETERS)), params)
        prefetch = float(_zero_setting(run, "stage3_prefetch_bucket_size", int(0.9 * shape.hidden ** 2)))
        out["ZeRO-3 live + prefetched parameters"] = (live + prefetch) * w_bytes
        notes.append(f"ZeRO-3 keeps up to stage3_max_live_parameters={live:.3g} gathered parameters "
                     "(distributed.additional_parameters.zero_optimization.stage3_max_live_parameters lowers it)")
        if not get_strategy(run).uses_adapter:
            out["ZeRO-3 largest layer gradient"] = shape.largest_layer() * w_bytes
    if stage >= 1 and not d.offload_optimizer:
        part = trainable / n
        if stage >= 3:
            part = min(part, float(_zero_setting(run, "sub_group_size", ZERO3_SUB_GROUP_SIZE)))
        out["fp32 gradients (optimizer step)"] = 4.0 * part
    return out


def _hint(run: RunConfig) -> str:
    h, d = run.hparams, run.distributed
    tips = []
    from tuneforge.distributed.deepspeed import world_size

    if (d.zero_stage or 0) >= 1 and world_size(run) == 1:
        tips.append("more processes, e.g. launcher.gpus_per_node=8 (ZeRO shards across them; one shards nothing)")
    if not h.gradient_checkpointing:
        tips.append("hparams.gradient_checkpointing=true")
    if h.micro_batch_size > 1:
        tips.append("a smaller hparams.micro_batch_size (and a larger hparams.grad_accumulation)")
    adapter = get_strategy(run).uses_adapter
    if not adapter and (d.zero_stage or 0) < 3:
        tips.append("distributed=zero3 over more GPUs")
    elif (d.zero_stage or 0) >= 3 and not d.offload_params:
        tips.append("distributed=zero3-offload")
    if adapter and run.method.quantization.bits is None:
        tips.append("method=qlora")
    return "try " + ", ".join(tips) if tips else ""
