"""The sentence-transformers backend: an embedding model fine-tuned with ``SentenceTransformerTrainer``.

The data comes from the same pipeline as every other backend (lint, augmentation, grouped split); each prepared
row is turned into the columns its loss reads (:mod:`tuneforge.data.embedding_formats`):

    pairs         anchor, positive               MultipleNegativesRankingLoss (default), CachedMNRL
    triplets      anchor, positive, negative     MNRL (the negative is one more in-batch candidate), TripletLoss
    scored_pairs  sentence1, sentence2, score    CoSENTLoss (default), CosineSimilarityLoss

Conversation formats (csv_qa, chat, ...) are pairs: the last user turn is the anchor, the answer the positive.
``backend.hard_negatives`` turns pairs into triplets with another *train* answer of the same category.
The validation split is scored during training by ``InformationRetrievalEvaluator`` (its queries against the
whole answer corpus); its MRR@10 is the sweep objective. The run directory is the usual one: config.yaml,
metrics.jsonl, checkpoints/, model/ (sentence-transformers format: ``SentenceTransformer(<run>/model)``
loads it) and summary.json last. Under accelerate each rank runs ``python -m tuneforge.worker``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuneforge.backends.hf_trainer import trainer_arguments
from tuneforge.schema.components import BackendBase, LossMask
from tuneforge.schema.dataset import FORMAT_NAMES, PREFERENCE_FORMATS
from tuneforge.schema.run import RunConfig
from tuneforge.strategies.registry import get_strategy

log = logging.getLogger(__name__)

NAME = "sentence-transformers"
# loss name -> (sentence-transformers class, data shapes it trains on)
LOSSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mnrl": ("MultipleNegativesRankingLoss", ("pairs", "triplets")),
    "cached_mnrl": ("CachedMultipleNegativesRankingLoss", ("pairs", "triplets")),
    "triplet": ("TripletLoss", ("triplets",)),
    "cosent": ("CoSENTLoss", ("scored_pairs",)),
    "cosine": ("CosineSimilarityLoss", ("scored_pairs",)),
}
DEFAULT_LOSS = {"pairs": "mnrl", "triplets": "mnrl", "scored_pairs": "cosent"}
BATCH_SAMPLERS = ("batch_sampler", "no_duplicates", "group_by_label")
OBJECTIVES = ("hit@1", "hit@3", "hit@10", "mrr@10", "ndcg@10")
WEIGHTS = "model"


def data_shape(run: RunConfig) -> str:
    """pairs | triplets | scored_pairs: what the prepared rows become (dataset.format + hard negatives)."""
    fmt = run.dataset.format
    shape = fmt if fmt in ("triplets", "scored_pairs") else "pairs"
    if shape == "pairs" and getattr(run.backend, "hard_negatives", False):
        return "triplets"
    return shape


def loss_name(run: RunConfig) -> str:
    loss = run.backend.loss
    return DEFAULT_LOSS[data_shape(run)] if loss == "auto" else loss


def check_embedding_run(run: RunConfig) -> Iterable[str]:
    b, m = run.backend, run.method
    adapter = get_strategy(run).uses_adapter
    if m.quantization.bits is not None:
        yield (f"method={m.name} quantizes the base, which backend=sentence-transformers cannot train (a 4-bit "
               "encoder); use method=full, or method=lora with method.target_modules=[query,key,value]")
    if adapter and set(m.target_modules) & {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"}:
        yield (f"method.target_modules={list(m.target_modules)} names decoder (Llama) layers; a BERT encoder's "
               "attention layers are query, key, value (and dense): method.target_modules=[query,key,value]")
    if run.model.tiny is not None:
        yield (f"model={run.model.name_or_path} is a tiny causal LM; backend=sentence-transformers trains an "
               "embedding model: model=all-minilm-l6-v2 (or a sentence-transformers model directory)")
    if run.distributed.zero_stage is not None:
        yield (f"distributed={run.distributed.name}: DeepSpeed ZeRO is not wired for backend=sentence-transformers "
               "(a 22M-parameter encoder needs none); use distributed=none (data parallel via launcher=accelerate)")
    if b.loss != "auto" and b.loss not in LOSSES:
        yield f"backend.loss={b.loss!r} is not valid; choose one of: auto, {', '.join(LOSSES)}"
    elif b.hard_negatives and run.dataset.format in ("triplets", "scored_pairs"):
        yield (f"backend.hard_negatives=true builds triplets from pairs, but dataset {run.dataset.name!r} is "
               f"already {run.dataset.format}; set backend.hard_negatives=false")
    else:
        shape, loss = data_shape(run), loss_name(run)
        if shape not in LOSSES[loss][1]:
            fix = ", ".join(k for k, (_, shapes) in LOSSES.items() if shape in shapes)
            yield (f"backend.loss={loss} ({LOSSES[loss][0]}) trains on {' or '.join(LOSSES[loss][1])}, but dataset "
                   f"{run.dataset.name!r} (format {run.dataset.format}"
                   + (", backend.hard_negatives=true" if b.hard_negatives else "")
                   + f") gives {shape}; use backend.loss={fix} or a {'/'.join(LOSSES[loss][1])} dataset")
    if b.batch_sampler not in BATCH_SAMPLERS:
        yield f"backend.batch_sampler={b.batch_sampler!r} is not valid; choose one of: {', '.join(BATCH_SAMPLERS)}"
    if b.objective not in OBJECTIVES:
        yield f"backend.objective={b.objective!r} is not valid; choose one of: {', '.join(OBJECTIVES)}"
    if b.max_seq_length is not None and b.max_seq_length < 8:
        yield f"backend.max_seq_length={b.max_seq_length} must be >= 8 (or null for hparams.seq_len)"
    if b.additional_parameters:
        yield from _check_additional_parameters(b.additional_parameters)


def _check_additional_parameters(params: dict[str, Any]) -> Iterable[str]:
    """Escape-hatch keys must be SentenceTransformerTrainingArguments fields (imports it: only when used)."""
    import dataclasses
    import difflib

    from sentence_transformers import SentenceTransformerTrainingArguments

    valid = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
    for key in params:
        if key not in valid:
            hint = difflib.get_close_matches(key, valid, n=1)
            yield (f"backend.additional_parameters.{key} is not a SentenceTransformerTrainingArguments field"
                   + (f" (did you mean '{hint[0]}'?)" if hint else ""))


# --- data ----------------------------------------------------------------------------------------------

def read_rows(path: Path, shape: str) -> list[dict[str, Any]]:
    from tuneforge.data.embedding_formats import prepared_row

    with Path(path).open(encoding="utf-8") as f:
        return [prepared_row(line, "pairs" if shape == "triplets" and '"negative"' not in line else shape)
                for line in f if line.strip()]


def answer_categories(run: RunConfig) -> dict[str, str]:
    """positive text -> its category, read from the dataset source (the prepared lines carry no category)."""
    from tuneforge.data.formats import read_records
    from tuneforge.data.lint import check_messages
    from tuneforge.data.prepare import source_path

    out: dict[str, str] = {}
    for rec in read_records(source_path(run.dataset), run.dataset.format, run.dataset.fields):
        if rec.messages is None or rec.problems or rec.category is None:
            continue
        msgs, _ = check_messages(rec.messages)
        if msgs:
            out.setdefault(msgs[-1]["content"], rec.category)
    return out


def add_hard_negatives(rows: list[dict[str, Any]], categories: dict[str, str], seed: int) -> list[dict[str, Any]]:
    """Each pair gets another answer of the same category from ``rows`` (the train split only: a val/test
    answer never enters training, not even as a negative). Pairs without a same-category alternative get
    one from the other answers."""
    rng = random.Random(seed)
    answers = sorted({r["positive"] for r in rows})
    by_cat: dict[str, list[str]] = {}
    for a in answers:
        by_cat.setdefault(categories.get(a, ""), []).append(a)
    out = []
    for r in rows:
        pool = [a for a in by_cat.get(categories.get(r["positive"], ""), []) if a != r["positive"]]
        if not pool:
            pool = [a for a in answers if a != r["positive"]]
        out.append({**r, "negative": rng.choice(pool)} if pool else dict(r))
    return out


def ir_data(run: RunConfig, split_path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]],
                                                       dict[str, str]]:
    """(queries, corpus, relevant docs, query id -> category) for InformationRetrievalEvaluator.

    The corpus is every positive of every split (what a retriever would search); each query's relevant
    document is its own positive."""
    from tuneforge.data.prepare import prepare_splits

    data = prepare_splits(run.dataset)
    shape = "pairs"  # anchor + positive of any prepared row
    passages: list[str] = []
    for path in (data.train, data.val, data.test):
        passages += [r["positive"] for r in read_rows(path, shape)]
    ids = {p: f"d{i}" for i, p in enumerate(dict.fromkeys(passages))}
    corpus = {i: p for p, i in ids.items()}
    cats = answer_categories(run)
    queries, relevant, query_cat = {}, {}, {}
    for i, r in enumerate(read_rows(split_path, shape)):
        qid = f"q{i}"
        queries[qid] = r["anchor"]
        relevant[qid] = {ids[r["positive"]]}
        query_cat[qid] = cats.get(r["positive"], "")
    return queries, corpus, relevant, query_cat


def ir_evaluator(queries: dict[str, str], corpus: dict[str, str], relevant: dict[str, set[str]], name: str,
                 batch_size: int = 32, write_predictions: bool = False) -> Any:
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        queries, corpus, relevant, name=name, accuracy_at_k=[1, 3, 10], precision_recall_at_k=[1, 10],
        mrr_at_k=[10], ndcg_at_k=[10], map_at_k=[10], batch_size=batch_size, write_csv=False,
        main_score_function="cosine", write_predictions=write_predictions)


def retrieval_metrics(raw: dict[str, float], name: str) -> dict[str, float]:
    """InformationRetrievalEvaluator's keys (``<name>_cosine_accuracy@1``) -> hit@1, hit@3, hit@10, mrr@10,
    ndcg@10 (hit@k = accuracy@k: the relevant passage is among the top k)."""
    p = f"{name}_cosine_" if name else "cosine_"
    return {"hit@1": raw[p + "accuracy@1"], "hit@3": raw[p + "accuracy@3"], "hit@10": raw[p + "accuracy@10"],
            "mrr@10": raw[p + "mrr@10"], "ndcg@10": raw[p + "ndcg@10"]}


# --- model -------------------------------------------------------------------------------------------------

def load_embedding_model(run: RunConfig, path: str | Path | None = None) -> Any:
    """The run's base (or ``path``: a trained model/ directory) as a SentenceTransformer on CPU/GPU."""
    from sentence_transformers import SentenceTransformer

    from tuneforge.errors import ModelLoadError
    from tuneforge.models import resolve_model_path

    src = str(path) if path is not None else resolve_model_path(run.model)
    try:
        return SentenceTransformer(src, trust_remote_code=run.model.trust_remote_code)
    except Exception as exc:  # OSError, hub errors, ValueError for bad directories
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"cannot load embedding model {src!r}: {first}") from None


def _make_loss(run: RunConfig, model: Any) -> Any:
    from sentence_transformers import losses

    cls = getattr(losses, LOSSES[loss_name(run)][0])
    return cls(model)


class SentenceTransformersBackend(BackendBase):
    name = NAME
    task = "embedding"
    objectives = ("sft",)  # objective=... it trains (tuneforge.schema.objective)
    # single texts and single-turn Q&A
    data_formats = tuple(f for f in FORMAT_NAMES if f not in ("sharegpt", *PREFERENCE_FORMATS))

    def coverage(self) -> dict[str, str]:
        from tuneforge.backends.coverage import sentence_transformers_table

        return sentence_transformers_table()

    def loss_mask(self, run: RunConfig) -> LossMask:
        return "all-tokens"  # a contrastive loss over whole texts: no token is masked

    def check(self, run: RunConfig) -> Iterable[str]:
        yield from check_embedding_run(run)

    def run_in_process(self, run: RunConfig, run_dir: Path) -> dict[str, Any]:
        return self.train(run, run_dir)

    def build_trainer(self, run: RunConfig, run_dir: Path, callbacks: list | None = None) -> Any:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        from tuneforge.data.prepare import prepare_splits

        h, b = run.hparams, run.backend
        data = prepare_splits(run.dataset)
        shape = data_shape(run)
        train_rows = read_rows(data.train, shape)
        if b.hard_negatives:
            train_rows = add_hard_negatives(train_rows, answer_categories(run), h.seed)
        model = load_embedding_model(run)
        # texts are truncated to this while training only; the saved model keeps its own maximum
        self.model_max_seq_length = model.max_seq_length
        model.max_seq_length = min(b.max_seq_length or h.seq_len, model.max_seq_length or h.seq_len)
        if get_strategy(run).uses_adapter:
            from peft import LoraConfig, TaskType

            from tuneforge.strategies.registry import adapted_layers

            m = run.method
            layers = adapted_layers(m.layers_to_transform, model[0].auto_model.config.num_hidden_layers)
            model.add_adapter(LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=m.r, lora_alpha=m.alpha,
                                         lora_dropout=m.dropout, target_modules=list(m.target_modules),
                                         bias=m.bias, use_rslora=m.use_rslora, layers_to_transform=layers))
        evaluator = None
        if data.sizes.get("val") and shape != "scored_pairs":
            queries, corpus, relevant, _ = ir_data(run, data.val)
            if h.max_eval_samples is not None:  # the first N validation queries (the corpus stays whole)
                queries = dict(list(queries.items())[:h.max_eval_samples])
                relevant = {q: relevant[q] for q in queries if q in relevant}
            evaluator = ir_evaluator(queries, corpus, relevant, name="val", batch_size=max(h.micro_batch_size, 32))
        args = SentenceTransformerTrainingArguments(
            **trainer_arguments(run, run_dir, evaluate=evaluator is not None),
            batch_sampler=b.batch_sampler,
            **b.additional_parameters,
        )
        from tuneforge.secrets import keep_secrets_out_of_args

        keep_secrets_out_of_args(args)  # training_args.bin is pickled into every checkpoint
        from tuneforge.distributed.ranks import recording_trainer, world_size_from_env

        trainer_cls = recording_trainer(SentenceTransformerTrainer) if world_size_from_env() > 1 else \
            SentenceTransformerTrainer
        from tuneforge.tracking.trackers import tracking_callbacks

        return trainer_cls(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(train_rows),
            loss=_make_loss(run, model),
            evaluator=evaluator,
            callbacks=[*(callbacks or []), *tracking_callbacks(run, run_dir)],
        )

    def train(self, run: RunConfig, run_dir: Path) -> dict[str, Any]:
        from tuneforge.backends.hf_trainer import MetricsCallback
        from tuneforge.preemption import latest_complete_checkpoint, preemption_callbacks

        t0 = time.perf_counter()
        metrics_cb = MetricsCallback(run_dir / "metrics.jsonl")
        trainer = self.build_trainer(run, run_dir, callbacks=[metrics_cb, *preemption_callbacks(run_dir)])
        result = trainer.train(resume_from_checkpoint=latest_complete_checkpoint(run_dir / "checkpoints"))
        val: dict[str, float] = {}
        if trainer.evaluator is not None:  # at the model's own length, as eval and search will see it
            trainer.model.max_seq_length = self.model_max_seq_length
            raw = trainer.evaluator(trainer.model)
            val = {f"val_{k}": v for k, v in retrieval_metrics(raw, "val").items()}
        if trainer.is_world_process_zero():
            trainer.model.max_seq_length = self.model_max_seq_length
            from tuneforge.rundir import atomic_write_dir

            atomic_write_dir(run_dir / WEIGHTS, lambda tmp: trainer.model.save(str(tmp)))
        from tuneforge.distributed.ranks import write_rank_record

        write_rank_record(run_dir, trainer)
        history = [r for r in trainer.state.log_history if "loss" in r]
        objective = f"val_{run.backend.objective}"
        out = {
            "train_loss": result.training_loss,
            "first_loss": history[0]["loss"] if history else None,
            "last_loss": history[-1]["loss"] if history else None,
            "eval_loss": None,
            **val,
            "loss_function": LOSSES[loss_name(run)][0],
            "data_shape": data_shape(run),
            "train_examples": len(trainer.train_dataset),
            "steps": trainer.state.global_step,
            "tokens": 0,
            "train_runtime_s": result.metrics.get("train_runtime"),
            "time_to_first_step_s": metrics_cb.first_step_s,
            "first_step_unix": metrics_cb.first_step_unix,
            "train_begin_unix": metrics_cb.train_begin_unix,
            "wall_s": time.perf_counter() - t0,
            "weights": WEIGHTS,
            "world_size": trainer.args.world_size,
        }
        if objective in out:  # the sweep objective: higher is better
            out.update(objective_key=objective, objective_higher_is_better=True)
        return out
