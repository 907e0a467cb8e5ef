"""A/B in front of users: two arms behind the run's one model id, a declared share, and an append-only log.

Each chat completion goes to arm B when ``hash(seed, unit) < share`` (the unit is the request's ``user`` field, so
one user stays on one arm, or else its id: the ``X-Request-ID`` header, or the id the server makes). The
response's ``id`` is that request id; ``POST /v1/feedback {"id": ..., "rating": <number>}`` rates it. Both go to
``<run>/ab/log.jsonl``, one JSON object a line, appended and never rewritten:

- ``start``: the arms (run directory, model id), the share and the seed, once per server start;
- ``answer``: id, arm, the last user turn, the answer, finish reason, completion tokens, max_tokens;
- ``feedback``: id, arm, rating (a later rating of the same id replaces the earlier one in the report).

No header, key or system prompt is written. ``tuneforge ab report run=<dir>`` summarises the log per arm.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AB_DIR = "ab"
LOG_NAME = "log.jsonl"


def ab_log_path(run_dir: Path) -> Path:
    return run_dir / AB_DIR / LOG_NAME


def arm_for(unit: str, share: float, seed: int) -> str:
    """'b' for a ``share`` of units, 'a' for the rest; the same unit and seed always get the same arm."""
    digest = hashlib.sha256(f"{seed}:{unit}".encode()).digest()
    return "b" if int.from_bytes(digest[:8], "big") / 2 ** 64 < share else "a"


@dataclass(frozen=True)
class Arm:
    name: str  # "a" or "b"
    handler: Any  # the arm's RunChatHandler (its own model manager, pinned to model_id)
    model_id: str
    run_dir: Path
    base: bool = False  # the run's base model rather than a fine-tuned run


class ABLog:
    """The append-only JSONL log; one lock, one line per write, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.answered: dict[str, str] = {}  # id -> arm, earlier server starts included
        if path.is_file():
            for rec in read_log(path):
                if rec.get("event") == "answer":
                    self.answered[rec["id"]] = rec["arm"]

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        if record.get("event") == "answer":
            self.answered[record["id"]] = record["arm"]


def read_log(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _last_user_turn(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return ""


class ABRouter:
    """Stands where transformers' chat handler stands (``handle_request(body, request_id)``): picks the arm,
    lets the arm's handler answer, records the answer."""

    def __init__(self, arms: tuple[Arm, Arm], share: float, seed: int, log: ABLog) -> None:
        self.arms = {a.name: a for a in arms}
        self.public_id = arms[0].model_id
        self.share, self.seed, self.log = share, seed, log
        log.append({"event": "start", "share": share, "seed": seed, "arms": {
            a.name: {"run": str(a.run_dir), "model": a.model_id, "base": a.base} for a in arms}})

    async def handle_request(self, body: dict, request_id: str) -> Any:
        from fastapi import HTTPException
        from fastapi.responses import StreamingResponse

        if request_id in self.log.answered:
            raise HTTPException(status_code=400, detail=f"request id {request_id!r} was answered before; an A/B "
                                                        "request id (X-Request-ID) names one answer")
        arm = self.arms[arm_for(str(body.get("user") or request_id), self.share, self.seed)]
        if body.get("model", self.public_id) == self.public_id:
            body["model"] = arm.model_id
        prompt = _last_user_turn(body.get("messages") or [])
        response = await arm.handler.handle_request(body, request_id)
        record = {"event": "answer", "id": request_id, "arm": arm.name, "model": arm.model_id, "prompt": prompt,
                  "max_tokens": body.get("max_tokens"), "stream": bool(body.get("stream"))}
        if isinstance(response, StreamingResponse):
            response.body_iterator = self._recorded_stream(response.body_iterator, record)
        elif response.status_code == 200:
            done = json.loads(bytes(response.body))
            choice = done["choices"][0]
            self.log.append({**record, "answer": choice["message"].get("content") or "",
                             "finish_reason": choice.get("finish_reason"),
                             "completion_tokens": (done.get("usage") or {}).get("completion_tokens")})
        return response

    async def _recorded_stream(self, chunks: Any, record: dict[str, Any]) -> Any:
        parts: list[str] = []
        finish, tokens, complete = None, None, False
        try:
            async for chunk in chunks:
                text = chunk if isinstance(chunk, str) else chunk.decode()
                for line in text.splitlines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        event = json.loads(line[6:])
                        for choice in event.get("choices") or []:
                            parts.append((choice.get("delta") or {}).get("content") or "")
                            finish = choice.get("finish_reason") or finish
                        tokens = (event.get("usage") or {}).get("completion_tokens", tokens)
                yield chunk
            complete = True
        finally:  # a client that leaves mid-stream: the partial answer is recorded as incomplete
            self.log.append({**record, "answer": "".join(parts), "finish_reason": finish if complete else None,
                             "completion_tokens": tokens, "complete": complete})


def add_feedback_route(app: Any, log: ABLog) -> None:
    """``POST /v1/feedback {"id": <response id>, "rating": <number>}``; the response does not say the arm.
    Errors are HTTPExceptions: the app answers them in OpenAI's error shape."""
    from fastapi import HTTPException
    from fastapi.responses import JSONResponse

    @app.post("/v1/feedback")
    async def feedback(body: dict) -> Any:  # not a JSON object: FastAPI's validation error, a 400
        rid, rating = body.get("id"), body.get("rating")
        if not isinstance(rid, str) or rid not in log.answered:
            raise HTTPException(status_code=404, detail=f"no answer with id {rid!r} (send the `id` of a chat "
                                                        "completion)")
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not math.isfinite(rating):
            raise HTTPException(status_code=400, detail="`rating` must be a number (e.g. 1-5, or -1 / 1)")
        log.append({"event": "feedback", "id": rid, "arm": log.answered[rid], "rating": rating})
        return JSONResponse({"object": "feedback", "id": rid, "rating": rating})
