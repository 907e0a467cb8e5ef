"""The OpenAI stand-in's wire: HTTP routing, multipart uploads, OpenAI's error and list shapes. The API's state
and rules live in :mod:`tuneforge.openai_standin` (``StandIn``)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse


def _error(message: str, kind: str, param: str | None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _page(items: list[dict[str, Any]], query: dict[str, list[str]], kind: str) -> dict[str, Any]:
    limit = int(query.get("limit", ["20"])[0])
    after = query.get("after", [None])[0]
    if after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "_type": kind}


class _Handler(BaseHTTPRequestHandler):
    owner: Any  # the tuneforge.openai_standin.StandIn this server answers for
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # the SDK's retries would flood the console
        pass

    def _send(self, status: int, body: dict[str, Any] | bytes, type_name: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict):
            kind = body.pop("_type", type_name)
            if status == 200 and kind:
                self.owner.responses.append((kind, json.loads(json.dumps(body))))
            data, ctype = json.dumps(body).encode(), "application/json"
        else:
            data, ctype = body, "application/octet-stream"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _route(self, method: str) -> None:
        o = self.owner
        url = urlparse(self.path)
        path = url.path.removeprefix("/v1")
        query = parse_qs(url.query)
        body = self._body()
        with o.lock:
            o.requests.append((method, path, time.monotonic()))
            fault = next((f for f in o.faults if f.method == method and re.fullmatch(f.path, path) and f.times > 0),
                         None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.status == 0:  # a dropped connection: no answer at all
                self.close_connection = True
                self.connection.shutdown(2)
                return
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            return self._send(fault.status, _error(f"stand-in fault {fault.status}", kind, None, code=kind),
                              headers=headers)
        if self.headers.get("Authorization") != f"Bearer {o.api_key}":
            return self._send(401, _error("Incorrect API key provided.", "invalid_request_error", None,
                                          code="invalid_api_key"))
        with o.lock:
            self._dispatch(method, path, query, body)

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        o = self.owner
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/files":
            name, data, purpose = _multipart(self.headers.get("Content-Type", ""), body)
            return self._send(200, o._file(name, data, purpose), "FileObject")
        if method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
            if parts[1] not in o.contents:
                return self._send(404, _error("No such File object", "invalid_request_error", "id"))
            return self._send(200, o.contents[parts[1]])
        if method == "POST" and path == "/chat/completions":
            status, out = o.chat(json.loads(body or b"{}"))
            return self._send(status, out, "ChatCompletion")
        if parts[:2] == ["fine_tuning", "jobs"]:
            if len(parts) == 2 and method == "POST":
                status, out = o.create_job(json.loads(body or b"{}"))
                return self._send(status, out, "FineTuningJob")
            if len(parts) == 2 and method == "GET":
                jobs = [o._public(j) for j in reversed(list(o.jobs.values()))]
                return self._send(200, _page(jobs, query, "FineTuningJob"))
            job = o.jobs.get(parts[2])
            if job is None:
                return self._send(404, _error(f"Could not find fine-tune: {parts[2]}", "invalid_request_error", "id"))
            tail = parts[3] if len(parts) > 3 else None
            if tail is None and method == "GET":
                o.advance(job)
                return self._send(200, o._public(job), "FineTuningJob")
            if tail == "events" and method == "GET":
                return self._send(200, _page(job.events[::-1], query, "FineTuningJobEvent"))
            if tail == "checkpoints" and method == "GET":
                return self._send(200, _page(job.checkpoints[::-1], query, "FineTuningJobCheckpoint"))
            if tail == "cancel" and method == "POST":
                if job.body["status"] in ("succeeded", "failed", "cancelled"):
                    return self._send(400, _error(f"Job has already completed: {job.body['status']}",
                                                  "invalid_request_error", None))
                job.body.update(status="cancelled", finished_at=int(time.time()))
                o._event(job, "Fine-tuning job cancelled")
                return self._send(200, o._public(job), "FineTuningJob")
        return self._send(404, _error(f"Unknown request URL: {method} {path}", "invalid_request_error", None))

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")


def _multipart(content_type: str, body: bytes) -> tuple[str, bytes, str]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    name, data, purpose = "upload", b"", ""
    for part in msg.iter_parts():
        field_name = part.get_param("name", header="content-disposition")
        if field_name == "file":
            name, data = part.get_filename() or name, part.get_payload(decode=True) or b""
        elif field_name == "purpose":
            purpose = (part.get_payload(decode=True) or b"").decode()
    return name, data, purpose
