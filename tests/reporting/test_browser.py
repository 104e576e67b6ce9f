"""The report page opened in headless Chromium (Debian's ``chromium``): no console errors, every figure decodes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Counts the page's images and those the browser decoded, once everything has loaded.
PROBE = (
    '<script>window.addEventListener("load", () => { const images = [...document.images]; document.body.dataset.images'
    ' = images.length + ":" + images.filter((i) => i.complete && i.naturalWidth > 0).length; });</script>'
)
# The closed network of CI: no background connections, no first-run work.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("SEGDINO_REQUIRE_CHROMIUM") == "1":
        pytest.fail("SEGDINO_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
    pytest.skip("headless Chromium not installed (Debian: apt-get install chromium); CI installs it")


def _render(chromium: str, page: Path, work: Path, *args: str) -> tuple[list[str], str]:
    """Open a copy of ``page`` with the probe; returns the console messages and the final DOM."""
    probed = work / f"probed_{page.name}"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    command = [chromium, *FLAGS, f"--user-data-dir={work / 'profile'}", *args, probed.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=work)
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return console, result.stdout


def _decoded(dom: str) -> tuple[int, int]:
    match = re.search(r'data-images="(\d+):(\d+)"', dom)
    assert match, "the probe did not run: the page did not finish loading"
    return int(match[1]), int(match[2])


def test_report_renders_without_console_errors(chromium, evaluated_run, tmp_path):
    console, dom = _render(chromium, evaluated_run / "report.html", tmp_path, "--dump-dom")
    assert console == []
    total, decoded = _decoded(dom)
    assert total == len(list((evaluated_run / "report_files").glob("*.png"))) > 0
    assert decoded == total

    shot = tmp_path / "report.png"
    _render(chromium, evaluated_run / "report.html", tmp_path, "--window-size=1100,1600", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1100)
    assert pixels.std() > 10  # text, tables and figures, not a blank page


def test_the_check_catches_a_broken_page(chromium, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
        "<script>console.error('boom'); missing_function();</script></body></html>"
    )
    console, dom = _render(chromium, broken, tmp_path, "--dump-dom")
    assert any("boom" in line for line in console)
    assert any("missing_function is not defined" in line for line in console)
    assert _decoded(dom) == (1, 0)
