"""Backend schemas: shared fields in ``BackendConfig``, backend-specific ones in subclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class BackendConfig:
    name: str = MISSING  # a key of tuneforge.backends.registry.BACKENDS
    # escape hatch: keys passed verbatim to the backend's native config (TrainingArguments, axolotl YAML, ...)
    additional_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class NativeBackendConfig(BackendConfig):
    name: str = "native"
    # train on the assistant turns only (prompt tokens are masked out of the loss)
    assistant_only_loss: bool = True


@dataclass
class AxolotlBackendConfig(BackendConfig):
    """axolotl (``python -m axolotl.cli.train <run_dir>/axolotl.yaml``): the run config is translated into
    axolotl's YAML, checked by axolotl's own validator, and trained by it. ``additional_parameters`` are
    axolotl keys written into that YAML last (after validation by axolotl too)."""

    name: str = "axolotl"
    # auto: CPU settings (axolotl's CUDA-only LoRA kernels off, no bf16/fp16/tf32) when the launch runs on CPUs
    device: str = "auto"  # auto | cpu | cuda
    # False: the loss covers assistant turns only (as the native backend's assistant_only_loss)
    train_on_inputs: bool = False
    dataset_prepared_path: Optional[str] = None  # axolotl's tokenized-dataset cache; default <run_dir>/axolotl_prepared
    dataset_processes: Optional[int] = None  # tokenization workers; default: axolotl's (all CPUs)


@dataclass
class OpenAIBackendConfig(BackendConfig):
    """OpenAI's hosted fine-tuning (``tuneforge.backends.openai_hosted``): the prepared train/val splits are
    uploaded as chat JSONL and trained by a ``fine_tuning.jobs`` job on ``model.name_or_path``. Keys that have
    no hosted meaning (LoRA, quantization, DeepSpeed, optimizer, ...) are refused at compose time."""

    name: str = "openai"
    # the key is read from this variable (or from api_key_file), never stored in the run directory
    api_key_env: str = "OPENAI_API_KEY"
    key_file: Optional[str] = None  # a file holding only the API key (mode 600); overrides api_key_env
    base_url: Optional[str] = None  # default: $OPENAI_BASE_URL, else https://api.openai.com/v1 (Azure: .../openai/v1/)
    organization: Optional[str] = None  # default: $OPENAI_ORG_ID
    project: Optional[str] = None  # default: $OPENAI_PROJECT_ID
    # supervised hyperparameters: null = from hparams (epochs; micro_batch_size x grad_accumulation); "auto" or a number
    n_epochs: Any = None
    batch_size: Any = None
    learning_rate_multiplier: Any = "auto"
    suffix: Optional[str] = None  # part of the fine-tuned model's name: ft:<model>:<org>:<suffix>:<id>
    metadata: dict[str, str] = field(default_factory=dict)  # up to 16 key/value pairs attached to the job
    max_cost_usd: float = 5.0  # `train` asks before starting a job estimated above this (--yes skips the question)
    # USD per 1M training tokens, per base model (conf/backend/openai.yaml holds the dated table)
    prices_as_of: Optional[str] = None
    training_usd_per_1m_tokens: dict[str, float] = field(default_factory=dict)
    # tokens per training example each base model accepts (OpenAI's fine-tuning limits)
    example_token_limits: dict[str, int] = field(default_factory=dict)
    poll_interval_s: float = 5.0  # first wait between polls; doubles while nothing happens, up to the max
    max_poll_interval_s: float = 60.0
    max_retries: int = 5  # per request: 429 (honouring Retry-After), 5xx and dropped connections (the SDK's retry)
    request_timeout_s: float = 120.0
    follow: bool = True  # false: create the job and return; `train run_dir=<dir>` re-attaches later


@dataclass
class SentenceTransformersBackendConfig(BackendConfig):
    """sentence-transformers' ``SentenceTransformerTrainer``: an embedding model trained on pairs, triplets or
    scored pairs (the data shape follows dataset.format; csv_qa/chat Q&A rows are pairs). ``additional_parameters``
    are SentenceTransformerTrainingArguments fields."""

    name: str = "sentence-transformers"
    # auto: mnrl for pairs and triplets, cosent for scored pairs. mnrl | cached_mnrl | triplet | cosent | cosine
    loss: str = "auto"
    # pairs -> triplets: each pair gets another train answer of its category as a hard negative
    hard_negatives: bool = False
    max_seq_length: Optional[int] = None  # null: hparams.seq_len, capped at the model's own maximum
    # no_duplicates keeps a text out of its own batch's in-batch negatives (query variants share answers)
    batch_sampler: str = "no_duplicates"  # batch_sampler | no_duplicates | group_by_label
    # the validation split is scored with InformationRetrievalEvaluator (pairs/triplets); sweeps maximize it
    objective: str = "mrr@10"  # hit@1 | hit@3 | hit@10 | mrr@10 | ndcg@10
