"""The data pipeline's working parts: per-example columns in typed arrays, the tokenizer batcher that counts
tokens on a worker thread, the buffered line writer, and repeated-key detection. :mod:`tuneforge.data.pipeline`
drives them."""

from __future__ import annotations

from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneforge.data.lint import FindingLog
from tuneforge.data.tokens import TokenCounter

_TOKEN_BATCH = 2048
_NUMPY_TYPES = {"i": np.int32, "q": np.int64, "Q": np.uint64, "h": np.int16}


@dataclass
class TokenOptions:
    counter: TokenCounter
    max_tokens: int
    seq_len: int
    micro_batch_size: int = 4


class _Columns:
    """Per-example numbers, in compact typed arrays (50 bytes per example in all).

    exact/question/answer/system use Python's hash(): salted per process, which is fine for finding equal
    values within one run. The group hash decides the split, so it must be the same in every process.
    """

    def __init__(self) -> None:
        self.line = array("i")
        self.exact = array("q")
        self.question = array("q")
        self.answer = array("q")
        self.group = array("Q")
        self.system = array("q")
        self.category = array("h")
        self.tokens = array("i")

    def view(self, name: str) -> np.ndarray:
        """A numpy view (no copy) of one column; valid once pass 1 stops appending."""
        a = getattr(self, name)
        dtype = _NUMPY_TYPES[a.typecode]
        return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype=dtype)


class _TokenBatcher:
    """Counts tokens of staged examples in batches, on a worker thread.

    The Rust tokenizer releases the GIL, so batch k is tokenized while the main thread parses batch k+1.
    At most two batches are in memory; counts land in order.
    """

    def __init__(self, opts: TokenOptions, cols: _Columns, log: FindingLog):
        self.opts, self.cols, self.log = opts, cols, log
        self.pending: list[list[dict[str, str]]] = []
        self.lines: list[int] = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-count")
        self.in_flight: tuple[Future[list[int]], list[int]] | None = None

    def add(self, messages: list[dict[str, str]], line: int) -> None:
        self.pending.append(messages)
        self.lines.append(line)
        if len(self.pending) >= _TOKEN_BATCH:
            self.submit()

    def submit(self) -> None:
        self.collect()
        if self.pending:
            self.in_flight = (self.pool.submit(self.opts.counter.count, self.pending), self.lines)
            self.pending, self.lines = [], []

    def collect(self) -> None:
        if self.in_flight is None:
            return
        future, lines = self.in_flight
        self.in_flight = None
        counts = future.result()
        self.cols.tokens.extend(counts)
        limit = self.opts.max_tokens
        for n, line in zip(counts, lines):
            if n > limit:
                self.log.add(line, "D020", f"{n} tokens > limit {limit} ({self.opts.counter.name})")

    def finish(self) -> None:
        try:
            self.submit()
            self.collect()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _LineWriter:
    """Appends lines to a file in chunks (one write per few thousand lines instead of one per line)."""

    def __init__(self, path: Path, chunk: int = 4096):
        self.file = path.open("w", encoding="utf-8")
        self.buf: list[str] = []
        self.chunk = chunk

    def add(self, line: str) -> None:
        self.buf.append(line)
        if len(self.buf) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.buf.append("")  # join adds the final newline
            self.file.write("\n".join(self.buf))
            self.buf.clear()

    def close(self) -> None:
        self.flush()
        self.file.close()


def _repeated(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose key occurs more than once (sorted by key, then row) and, for each, its key's first row.

    Only a sort permutation and two boolean masks are full-size: the index arithmetic runs on the repeated
    rows alone, which keeps the peak memory of a million-row run low.
    """
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    eq = sk[1:] == sk[:-1]
    del sk
    multi = np.zeros(keys.size, dtype=bool)
    multi[1:] = eq
    multi[:-1] |= eq
    del eq
    rows = order[multi]
    del order, multi
    k = keys[rows]
    new = np.ones(rows.size, dtype=bool)
    new[1:] = k[1:] != k[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(rows.size), 0))
    return rows, rows[start]
