#!/usr/bin/env python3
"""Screenshot a run's report.html in headless Chromium (Debian package `chromium`) to check that it renders.

    .venv/bin/python scripts/render_report.py outputs/lora-tiny/<ts> [--out report.png] [--size 1280,1600]

Prints the PNG's path. Exit status 3 when no chromium is installed. The browser runs with no network, no
sandbox (containers run as root) and a throw-away profile, so the page must be fully self-contained.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((p for b in BROWSERS if (p := shutil.which(b))), None)


def screenshot(html: Path, png: Path, size: tuple[int, int] = (1280, 1600), timeout: float = 90) -> Path:
    """Render ``html`` headless into ``png``; raises RuntimeError with chromium's output if it fails."""
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install -y chromium)")
    png = png.resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="tuneforge-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="PNG path (default: <run_dir>/report.png)")
    ap.add_argument("--size", default="1280,1600", help="window WIDTH,HEIGHT")
    a = ap.parse_args(argv)
    html = a.run_dir / "report.html"
    if not html.is_file():
        print(f"{html}: not found (run `tuneforge eval run={a.run_dir}` first)", file=sys.stderr)
        return 2
    w, h = (int(x) for x in a.size.split(","))
    try:
        print(screenshot(html, a.out or a.run_dir / "report.png", (w, h)))
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
