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
    name: str = "openai"
    base_model: str = "gpt-4o-mini-2024-07-18"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored


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
