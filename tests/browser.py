"""Debian's chromium driven by Playwright (no browser download): what the browser tests
share. Screenshots go to ``$CLOTHES_RETRIEVAL_ARTIFACTS`` (default ``test-artifacts/``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[1]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no browser: {CHROMIUM} is absent (apt-get install chromium)"
)


def artifact_dir(*parts: str) -> Path:
    path = Path(os.environ.get("CLOTHES_RETRIEVAL_ARTIFACTS", "test-artifacts"))
    path = (path if path.is_absolute() else REPO / path).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch_browser() -> Iterator:
    """A headless chromium for a module's tests (use as a fixture's body)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()
