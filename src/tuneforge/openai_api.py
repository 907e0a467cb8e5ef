"""The OpenAI client of a run: the official ``openai`` SDK, configured from ``backend.*`` and the environment.

Shared by the hosted backend (upload, jobs), ``eval``/``chat`` (chat completions) and ``cancel``/``jobs``.
The key comes only from the environment variable ``backend.api_key_env`` (default OPENAI_API_KEY) or the
file ``backend.key_file``; it is handed to the SDK and never written anywhere (tuneforge.rundir.redact
also scrubs OPENAI_API_KEY's value from everything a run writes). ``backend.base_url`` (else
$OPENAI_BASE_URL) points the SDK at Azure OpenAI's v1 endpoint or any compatible server, such as the local
stand-in (``python -m tuneforge.openai_standin``).

Retries are the SDK's own: 408/409/429 (honouring Retry-After), 5xx and dropped connections, up to
``backend.max_retries`` times per request with exponential backoff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, LaunchError

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def api_key(cfg: Any) -> str:
    if cfg.key_file:
        path = Path(cfg.key_file).expanduser()
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"backend.key_file={cfg.key_file!r}: cannot read it ({exc.strerror})") from None
        if not key:
            raise ConfigError(f"backend.key_file={cfg.key_file!r} is empty")
        return key
    key = os.environ.get(cfg.api_key_env, "").strip()
    if not key:
        raise ConfigError(f"backend=openai needs an API key: export {cfg.api_key_env}=... (or set "
                          "backend.key_file=<file holding the key>); to try without one, start "
                          "`python -m tuneforge.openai_standin` and export what it prints")
    return key


def base_url(cfg: Any) -> str:
    return cfg.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL


def make_client(cfg: Any) -> Any:
    """An ``openai.OpenAI`` for ``cfg`` (an OpenAIBackendConfig)."""
    try:
        import openai
    except ImportError:
        raise ConfigError("backend=openai needs the openai SDK: pip install 'tuneforge[openai]'") from None
    return openai.OpenAI(api_key=api_key(cfg), base_url=base_url(cfg),
                         organization=cfg.organization or os.environ.get("OPENAI_ORG_ID") or None,
                         project=cfg.project or os.environ.get("OPENAI_PROJECT_ID") or None,
                         max_retries=cfg.max_retries, timeout=cfg.request_timeout_s)


def api_error(exc: BaseException, doing: str) -> LaunchError:
    """One line for an SDK error: status, OpenAI's error code and message (never the request's headers)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        code = err.get("code") or err.get("type") or ""
        msg = err.get("message") or str(exc)
        return LaunchError(f"OpenAI API: {doing} failed: HTTP {exc.status_code}"
                           + (f" {code}" if code else "") + f": {msg}")
    if isinstance(exc, openai.APIConnectionError):
        return LaunchError(f"OpenAI API: {doing} failed: cannot reach {exc.request.url.host if exc.request else '?'} "
                           f"after the retries ({type(exc).__name__})")
    return LaunchError(f"OpenAI API: {doing} failed: {type(exc).__name__}: {exc}")
