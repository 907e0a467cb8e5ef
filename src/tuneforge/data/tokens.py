"""Token counting with the run's tokenizer, fast enough for a million rows.

Rendering every example through the Jinja chat template is ~100x slower than tokenizing. So the template's
cost is measured once, on probe conversations: a fixed part, a system message's framing, and the framing of
one user+assistant pair. An example then costs ``fixed + system + pairs * pair + sum(tokens(content))``,
with the contents tokenized in batches by the Rust tokenizer. This is exact for templates that frame each
message with special tokens and do not rewrite content (ChatML, Llama 3 up to trimming), which
``TokenCounter.exact`` checks against the real template in the tests. A template that refuses the probes
(e.g. one without system support) falls back to rendering each example.

Worker processes (``processes=N``): the Rust tokenizer's Python binding keeps ~64 bytes per encoded
string for good (huggingface/tokenizers#1539: +120 MB over a million rows), so large inputs are tokenized
in spawned worker processes that are replaced every few hundred batches, which returns that memory and
also puts both cores to work. Small inputs are tokenized in process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from typing import Any, Self

_PROBE_A, _PROBE_B, _PROBE_S = "a", "b", "c"
_MEMO_LIMIT = 1024  # system prompts whose counts are remembered across batches (bounded: memory stays flat)
_TASKS_PER_WORKER = 200  # batches a worker tokenizes before it is replaced (bounds the binding's leak)

_IN_PROCESS_BYTES = 32 << 20  # sources smaller than this are tokenized in process

_worker_tokenizer: Any = None


def auto_processes(source_bytes: int) -> int:
    """Worker processes for a source of this size: none for small files, else one per core (at most 8)."""
    return 0 if source_bytes < _IN_PROCESS_BYTES else max(1, min(8, os.cpu_count() or 1))


def _init_worker(spec: str) -> None:
    global _worker_tokenizer
    from tokenizers import Tokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    _worker_tokenizer = Tokenizer.from_str(spec)


def _worker_lengths(texts: list[str]) -> tuple[list[int], float]:
    """Token lengths, and the worker's peak RSS in MB (VmHWM: its own, not the parent's it was spawned from)."""
    lengths = [len(e) for e in _worker_tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    return lengths, peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux /proc; 0.0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TokenCounter:
    def __init__(self, tokenizer: Any, name: str = "tokenizer", processes: int = 0):
        self.tokenizer = tokenizer
        self.name = name
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.fixed = self.system = self.pair = 0
        self.fast = False
        self._memo: dict[str, int] = {}
        self.processes = processes if self.backend is not None else 0
        self._pool: Any = None
        self.worker_peak_mb = 0.0  # the largest worker's peak RSS so far
        try:
            self._probe()
            self.fast = True
        except Exception:  # noqa: BLE001 (any template error: count by rendering instead)
            self.fast = False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _workers(self) -> Any:
        if self._pool is None:
            # spawn, not fork: the parent may hold torch and tokenizer threads
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(self.processes, initializer=_init_worker, initargs=(self.backend.to_str(),),
                                  maxtasksperchild=_TASKS_PER_WORKER)
        return self._pool

    def _render_len(self, messages: list[dict[str, str]]) -> int:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _probe(self) -> None:
        u = {"role": "user", "content": _PROBE_A}
        a = {"role": "assistant", "content": _PROBE_B}
        s = {"role": "system", "content": _PROBE_S}
        ta, tb, ts = self.content_lengths([_PROBE_A, _PROBE_B, _PROBE_S])
        one = self._render_len([u, a])
        two = self._render_len([u, a, u, a])
        with_system = self._render_len([s, u, a])
        self.pair = two - one - ta - tb
        self.fixed = one - self.pair - ta - tb
        self.system = with_system - one - ts

    def content_lengths(self, texts: Sequence[str]) -> list[int]:
        if self.processes and len(texts) >= 64:
            step = -(-len(texts) // self.processes)
            parts = self._workers().map(_worker_lengths, [list(texts[i:i + step]) for i in range(0, len(texts), step)])
            self.worker_peak_mb = max([self.worker_peak_mb, *(peak for _, peak in parts)])
            return [n for lengths, _ in parts for n in lengths]
        if self.backend is not None:
            return [len(e) for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def count(self, conversations: Sequence[list[dict[str, str]]]) -> list[int]:
        """Tokens of each conversation as the chat template renders it (valid, ordered conversations)."""
        if not self.fast:
            return [self._render_len(c) for c in conversations]
        # system prompts repeat on every example (remembered across batches), augmented answers on every
        # variant (contiguous, so within a batch): each distinct text is tokenized once
        memo = self._memo
        todo: dict[str, int] = {}
        for c in conversations:
            for m in c:
                text = m["content"]
                if text not in memo and text not in todo:
                    todo[text] = 0
        if todo:
            fresh = list(todo)
            found = dict(zip(fresh, self.content_lengths(fresh)))
        else:
            found = {}
        out = []
        for c in conversations:
            n = len(c)
            has_system = c[0]["role"] == "system"
            total = self.fixed + self.system * has_system + self.pair * ((n - has_system) // 2)
            for m in c:
                text = m["content"]
                k = memo.get(text)
                total += k if k is not None else found[text]
            out.append(total)
            if has_system and len(memo) < _MEMO_LIMIT and c[0]["content"] in found:
                memo[c[0]["content"]] = found[c[0]["content"]]
        return out

    def exact(self, conversation: list[dict[str, str]]) -> int:
        """The count by rendering the real template (for checks, not for bulk use)."""
        return self._render_len(conversation)
