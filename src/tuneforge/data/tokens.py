"""Token counting with the run's tokenizer, fast enough for a million rows.

Rendering every example through the Jinja chat template is ~100x slower than tokenizing. So the template's
cost is measured once, on probe conversations: a fixed part, a system message's framing, and the framing of
one user+assistant pair. An example then costs ``fixed + system + pairs * pair + sum(tokens(content))``,
with the contents tokenized in batches by the Rust tokenizer. This is exact for templates that frame each
message with special tokens and do not rewrite content (ChatML, Llama 3 up to trimming), which
``TokenCounter.exact`` checks against the real template in the tests. A template that refuses the probes
(e.g. one without system support) falls back to rendering each example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PROBE_A, _PROBE_B, _PROBE_S = "a", "b", "c"
_MEMO_LIMIT = 1024  # system prompts whose counts are remembered across batches (bounded: memory stays flat)


class TokenCounter:
    def __init__(self, tokenizer: Any, name: str = "tokenizer"):
        self.tokenizer = tokenizer
        self.name = name
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.fixed = self.system = self.pair = 0
        self.fast = False
        self._memo: dict[str, int] = {}
        try:
            self._probe()
            self.fast = True
        except Exception:  # noqa: BLE001 (any template error: count by rendering instead)
            self.fast = False

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
