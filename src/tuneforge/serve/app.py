"""The ASGI app: transformers' own OpenAI-compatible server (``transformers serve``'s FastAPI app, its model
manager, chat-completions handler and generation threads), pinned to the run's model, plus what a run needs
on top:

- ``/v1/models`` lists the run's model (transformers' lists the hub cache instead);
- requests without ``max_tokens`` / ``max_completion_tokens`` or without a system turn get the run's
  (transformers' handler ignores ``max_completion_tokens`` and defaults to 1024 new tokens);
- a prompt longer than the model's context is refused with a 400 instead of failing inside generate;
- an optional API key (``Authorization: Bearer``) from the environment, compared in constant time;
- one log line per request naming the run;
- with two arms (``serve.ab.*``), the split, the answer log and ``POST /v1/feedback`` (:mod:`tuneforge.serve.ab`).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from tuneforge.serve.model_dir import ServedModel

log = logging.getLogger("tuneforge.serve")


@dataclass(frozen=True)
class ABArms:
    """Arm B of an A/B (arm A is the served run) and the share of requests it answers."""

    served_b: ServedModel
    share: float
    seed: int
    base: bool  # arm B is the run's base model


def error_response(status: int, message: str, kind: str, code: str | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status)


def _run_handler_class() -> type:
    from fastapi import HTTPException
    from transformers.cli.serving.chat_completion import ChatCompletionHandler

    class RunChatHandler(ChatCompletionHandler):
        """transformers' handler, with the run's defaults and a context-length check before generation."""

        served: ServedModel

        async def handle_request(self, body: dict, request_id: str) -> Any:
            if not isinstance(body.get("messages"), list) or not body["messages"]:
                raise HTTPException(status_code=400, detail="`messages` must be a non-empty list of chat turns")
            if body.get("max_completion_tokens") is not None and body.get("max_tokens") is None:
                body["max_tokens"] = body["max_completion_tokens"]
            body.pop("max_completion_tokens", None)
            body.setdefault("max_tokens", self.served.decoding.max_new_tokens)
            system = self.served.system_prompt
            if system and not any(isinstance(m, dict) and m.get("role") in ("system", "developer")
                                  for m in body["messages"]):
                body["messages"] = [{"role": "system", "content": system}, *body["messages"]]
            self._check_length(body)
            return await super().handle_request(body, request_id)

        def _check_length(self, body: dict) -> None:
            _, _, processor = self._resolve_model(dict(body))
            try:
                ids = processor.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)["input_ids"]
            except Exception as exc:  # noqa: BLE001 - jinja and tokenizer errors: the turns are malformed
                raise HTTPException(status_code=400, detail=f"messages cannot be formatted: {exc}") from None
            limit = self.served.context_tokens
            if len(ids) + int(body["max_tokens"]) > limit:
                raise HTTPException(status_code=400, detail=(
                    f"prompt is {len(ids)} tokens + max_tokens {body['max_tokens']} > the model's context of "
                    f"{limit} tokens; shorten the conversation or lower max_tokens"))

    return RunChatHandler


def _chat_handler(served: ServedModel, device: str, state: Any) -> Any:
    """A chat handler with its own model manager, pinned to ``served`` (loaded now)."""
    from transformers.cli.serving.model_manager import ModelManager

    manager = ModelManager(device=device, dtype="auto", force_model=served.model_id)
    chat = _run_handler_class()(model_manager=manager, generation_state=state)
    chat.served = served
    return chat


def build_app(served: ServedModel, *, device: str = "auto", api_key: str | None = None,
              run_label: str = "", ab: ABArms | None = None) -> Any:
    """transformers' app with the run's model preloaded (the working directory must be ``served.root``). With
    ``ab``, the run's model id is answered by two arms (:mod:`tuneforge.serve.ab`)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from transformers.cli.serving.completion import CompletionHandler
    from transformers.cli.serving.response import ResponseHandler
    from transformers.cli.serving.server import build_server
    from transformers.cli.serving.transcription import TranscriptionHandler
    from transformers.cli.serving.utils import GenerationState

    state = GenerationState(continuous_batching=False)
    chat = _chat_handler(served, device, state)
    manager = chat.model_manager
    if ab is not None:
        from tuneforge.serve.ab import ABLog, ABRouter, Arm, ab_log_path

        ab_log = ABLog(ab_log_path(served.run_dir))
        arm_b = Arm("b", _chat_handler(ab.served_b, device, state), ab.served_b.model_id, ab.served_b.run_dir,
                    ab.base)
        chat = ABRouter((Arm("a", chat, served.model_id, served.run_dir), arm_b), ab.share, ab.seed, ab_log)
    app = build_server(manager, chat, completion_handler=CompletionHandler(manager, state),
                       response_handler=ResponseHandler(manager, state),
                       transcription_handler=TranscriptionHandler(manager, state), generation_state=state)
    from fastapi import HTTPException
    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> Any:  # OpenAI's error shape, for its SDK
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        return error_response(400, f"invalid request body: {first.get('msg', 'not a JSON object')}",
                              "invalid_request_error")

    if ab is not None:
        from tuneforge.serve.ab import add_feedback_route

        add_feedback_route(app, ab_log)
    created = int(served.path.stat().st_mtime)
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/v1/models"]

    @app.get("/v1/models")
    def list_models() -> Any:
        return JSONResponse({"object": "list", "data": [
            {"id": served.model_id, "object": "model", "created": created, "owned_by": "tuneforge",
             "root": str(served.run_dir)}]})

    @app.middleware("http")
    async def auth_and_log(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        if api_key and request.url.path.startswith("/v1"):
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {api_key}".encode()):
                log.warning("serve[%s] %s %s 401 (missing or wrong API key)", run_label, request.method,
                            request.url.path)
                return error_response(401, "missing or wrong API key (Authorization: Bearer ...)",
                              "invalid_request_error", "invalid_api_key")
        response = await call_next(request)
        log.info("serve[%s] %s %s %d %.2fs", run_label, request.method, request.url.path, response.status_code,
                 time.perf_counter() - t0)
        return response

    return app
