"""What tuneforge prints: its own log handler (installed once, never by Hydra) and the one live progress line.

Why tuneforge installs its handler itself: Hydra's ``job_logging``/``hydra_logging`` run
``logging.config.dictConfig``, which *closes every handler that exists in the process* (other libraries'
too). absl's handler (imported by rouge-score for eval) closes its stream on close, so a sweep after an eval
closed whatever ``sys.stderr`` that handler had captured: a notebook's, or pytest's capture. conf/config.yaml
therefore sets both Hydra logging groups to ``none``, and :func:`configure_logging` adds exactly one handler,
idempotently, to the ``tuneforge`` logger, writing to whatever ``sys.stderr`` is *at the time of the write*.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from tuneforge.callbacks import CallbackBase

_HANDLER_NAME = "tuneforge-console"


class _CurrentStderr(logging.StreamHandler):
    """A StreamHandler that looks up ``sys.stderr`` on every record and never closes it."""

    def __init__(self, name: str = _HANDLER_NAME) -> None:
        super().__init__()
        self.set_name(name)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; the live one is always used
        pass

    def close(self) -> None:  # the stream belongs to the process, not to us
        logging.Handler.close(self)


def verbose_requested() -> bool:
    return os.environ.get("TUNEFORGE_VERBOSE", "").lower() in ("1", "true", "yes")


def configure_logging(verbose: bool | None = None) -> None:
    """INFO (DEBUG with ``verbose``) from tuneforge's loggers to the current stderr; safe to call repeatedly.

    For entry points (the CLI, worker processes). Library calls (``train()``, ``cmd_sweep()`` from a
    notebook) leave the host's logging as it is."""
    verbose = verbose_requested() if verbose is None else verbose
    logger = logging.getLogger("tuneforge")
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    if not root.handlers:  # other libraries: their warnings (INFO too with verbose), through the same stream
        other = _CurrentStderr(_HANDLER_NAME + "-root")
        other.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(other)
    if any(h.get_name() == _HANDLER_NAME + "-root" for h in root.handlers):
        root.setLevel(logging.INFO if verbose else logging.WARNING)
    # bitsandbytes warns on every import that an optional CPU kernel package is absent: noise, not advice
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """tuneforge's log records also go to ``path`` while the block runs; the handler is removed after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("tuneforge")
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressLine:
    """One line, rewritten in place on a terminal (one line per update when piped, at most every ``every_s``)."""

    def __init__(self, label: str, total: int | None, out: TextIO | None = None, every_s: float = 5.0):
        self.label, self.total = label, total
        self.out = out
        self.every_s = every_s
        self.t0 = time.perf_counter()
        self._last_print = 0.0
        self._last_key: Any = None
        self._width = 0

    @property
    def stream(self) -> TextIO:
        return self.out if self.out is not None else sys.stderr

    def _tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def update(self, done: int, **fields: Any) -> None:
        """Show ``label done/total | key value | ... | elapsed, eta``. Piped: a line only when something
        changed, and at most every ``every_s`` (the first and the final update always)."""
        now = time.perf_counter()
        final = self.total is not None and done >= self.total
        key = (done, self.total, tuple((k, v) for k, v in fields.items() if v is not None))
        stale = not final and now - self._last_print < self.every_s and done > 1
        if not self._tty() and (key == self._last_key or stale):
            return
        self._last_print, self._last_key = now, key
        elapsed = now - self.t0
        parts = [f"{self.label} {done}/{self.total}" if self.total else f"{self.label} {done}" if done
                 else self.label]
        for k, v in fields.items():
            if v is None:
                continue
            parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
        if self.total and done:
            eta = elapsed / done * (self.total - done)
            parts.append(f"elapsed {_fmt_duration(elapsed)} eta {_fmt_duration(eta)}")
        text = " | ".join(parts)
        try:
            if self._tty():
                pad = max(0, self._width - len(text))
                self.stream.write("\r" + text + " " * pad)
                self._width = len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except ValueError:  # the stream was closed under us (interpreter exit): progress is optional
            pass

    def message(self, text: str) -> None:
        """A line of its own above the live line (which the next update redraws)."""
        try:
            if self._tty() and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self._width = 0
            self.stream.write(text + "\n")
            self.stream.flush()
        except ValueError:
            pass

    def close(self) -> None:
        if self._tty() and self._width:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except ValueError:
                pass
        self._width = 0


class TrainProgressCallback(CallbackBase):
    """transformers TrainerCallback (duck-typed): one live line per run instead of the Trainer's raw log dicts.

    step/total, loss, lr, tokens/s and ETA; eval results as one line each. ``--verbose`` keeps the Trainer's
    own tqdm bar and dict printing instead (the native backend then does not install this callback)."""

    def __init__(self, label: str = "train") -> None:
        self.label = label
        self.line: ProgressLine | None = None
        self.loss: float | None = None
        self.lr: float | None = None
        self.tokens0: int = 0
        self.t0 = time.perf_counter()
        self.eval_line: ProgressLine | None = None
        self.eval_done = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            self.line = ProgressLine(self.label, state.max_steps or None)
            self.tokens0 = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            self.t0 = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.line is None:
            return
        tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0) - self.tokens0
        dt = time.perf_counter() - self.t0
        self.line.update(state.global_step, loss=self.loss, lr=self.lr,
                         **{"tok/s": round(tokens / dt) if dt > 0 and tokens else None})

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if self.line is None or not logs:
            return
        if "loss" in logs:
            self.loss = float(logs["loss"])
        if "learning_rate" in logs:
            self.lr = float(logs["learning_rate"])
        if "eval_loss" in logs:
            self.line.close()
            self.line.stream.write(f"eval at step {state.global_step}: loss {float(logs['eval_loss']):.4f}\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.line is not None:
            self.line.close()
            self.line = None

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Evaluation batches (the validation loss during and after training) get their own live line."""
        if not state.is_world_process_zero:
            return
        if self.eval_line is None:
            loader = kw.get("eval_dataloader")
            try:
                total = len(loader) if loader is not None else None
            except TypeError:
                total = None
            if self.line is not None:
                self.line.close()
            self.eval_line, self.eval_done = ProgressLine(f"{self.label} eval", total), 0
        self.eval_done += 1
        self.eval_line.update(self.eval_done)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.eval_line is not None:
            self.eval_line.close()
            self.eval_line = None


def quiet_library_progress() -> None:
    """No per-call progress bars from datasets/transformers (weights loading, map): the run has its own line."""
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
