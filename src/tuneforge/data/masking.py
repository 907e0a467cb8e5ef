"""Loss masks by role, for any chat template: which tokens of a rendered conversation are trained.

transformers' ``return_assistant_tokens_mask`` needs ``{% generation %}`` markers in the template, and TRL's
``get_training_chat_template`` patches only the templates it knows; SmolLM2's template has neither. So, like
axolotl's ``roles_to_train``, the spans come from the template itself: a turn's text is what rendering the
conversation up to and including that turn adds to the rendering up to its generation prompt. The span covers
the turn's content and its end-of-turn token (the model must learn to stop) but not the whitespace after it.
Character spans become token masks through the fast tokenizer's offsets, so no template-specific code is needed.
"""

from __future__ import annotations

from typing import Any

from tuneforge.errors import DataError


def _render(tokenizer: Any, messages: list[dict[str, Any]], *, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def trained_char_spans(tokenizer: Any, messages: list[dict[str, Any]],
                       roles: tuple[str, ...] = ("assistant",)) -> tuple[str, list[tuple[int, int]]]:
    """(rendered text, [start, end) character spans of the turns of ``roles``)."""
    text = _render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message.get("role") not in roles:
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1])
        if text.startswith(before) and text.startswith(through) and len(through) > len(before):
            start, end = len(before), len(through)
        else:  # a template that is not prefix-preserving: find the content itself, after the previous turn
            content = str(message.get("content", "")).strip()
            start = text.find(content, cursor) if content else -1
            if start < 0:
                raise DataError(
                    f"cannot find turn {i} ({message.get('role')}) in the rendered chat template: the template "
                    "changes earlier turns when later ones are added and the content does not appear verbatim; "
                    "set model.chat_template=chatml (or a template with {% generation %} markers)")
            end = start + len(content)
        while end > start and text[end - 1].isspace():
            end -= 1
        spans.append((start, end))
        cursor = end
    return text, spans


def tokenize_with_role_mask(tokenizer: Any, messages: list[dict[str, Any]], max_length: int | None = None,
                            roles: tuple[str, ...] = ("assistant",)) -> dict[str, list[int]]:
    """``input_ids`` of the rendered conversation and ``assistant_masks`` (1 = trained), truncated to max_length."""
    text, spans = trained_char_spans(tokenizer, messages, roles)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = []
    k = 0
    for s, e in offsets:
        while k < len(spans) and spans[k][1] <= s:
            k += 1
        mask.append(1 if k < len(spans) and s < spans[k][1] and e > spans[k][0] else 0)
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return {"input_ids": list(ids), "assistant_masks": mask}


def unanswered_within(tokenizer: Any, paths: dict[str, Any], max_length: int) -> list[str]:
    """The splits (of ``paths``: split name -> chat JSONL) holding an example with no assistant token left after
    truncation to ``max_length``: such an example trains on nothing, and the trainer refuses it mid-launch."""
    import json

    bad = []
    for split, path in paths.items():
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                mask = tokenize_with_role_mask(tokenizer, json.loads(line)["messages"], max_length=max_length)
                if 1 not in mask["assistant_masks"]:
                    bad.append(split)
                    break
    return bad
