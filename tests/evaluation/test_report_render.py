"""The A/B report renders in headless Chromium (Debian `chromium`; .ci/run installs it). The screenshot is
kept under the test's tmp dir and its path printed, for a person to look at."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.evaluation.shared_run import SharedRun, trained_lora_run

REPO = Path(__file__).resolve().parents[2]


def _render_module():
    spec = importlib.util.spec_from_file_location("render_report", REPO / "scripts" / "render_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()
pytestmark = [pytest.mark.chromium,
              pytest.mark.skipif(render.find_chromium() is None,
                                 reason="chromium is not installed (Debian: apt-get install -y chromium)")]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return trained_lora_run(tmp_path_factory)


def test_report_html_renders_in_headless_chromium(lora_run: SharedRun, tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    png = render.screenshot(lora_run.run_dir / "report.html", tmp_path / "report.png", (1280, 1600))
    print(f"screenshot: {png}")
    img = imread(png)[..., :3]
    assert img.shape[:2] == (1600, 1280)
    # the page is drawn, not blank: dark text, the coloured verdict banner and the white cards are all there
    gray = img.mean(axis=2)
    assert (gray < 0.3).mean() > 0.005, "no text pixels"
    assert img.std() > 0.05
    verdict = img[60:260].reshape(-1, 3)
    tinted = (np.abs(verdict[:, 0] - verdict[:, 1]) > 0.05) | (np.abs(verdict[:, 1] - verdict[:, 2]) > 0.05)
    assert tinted.mean() > 0.02, "no coloured verdict/delta near the top"
    # the loss-curve image is laid out within the page width (no horizontal overflow)
    assert gray[:, -20:].std() < 0.05
