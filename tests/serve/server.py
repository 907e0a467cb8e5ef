"""Start and stop a real ``tuneforge serve`` process on 127.0.0.1 for a test (a free port, its own logs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(run_dir: Path, log: Path, *extra: str, env: dict[str, str] | None = None,
                 timeout: float = 180) -> Server:
    port = free_port()
    out = log.open("w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "serve", f"run={run_dir}", f"serve.port={port}",
                             *extra], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tuneforge serve exited with {proc.returncode}:\n{server.output()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"tuneforge serve not healthy after {timeout}s:\n{server.output()[-3000:]}")
