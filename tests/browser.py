"""A real headless browser for tests: Debian's chromium, driven by Playwright, never downloaded.

Playwright's own browser downloads are never used: `executable_path` names the system's
chromium (deploy/local/install.sh installs it). As root, chromium's sandbox cannot start,
so it runs with `--no-sandbox` there. Screenshots go to ARTEFACTS (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Page, async_playwright

from tests.paths import ROOT

__all__ = ["ARTEFACTS", "CHROMIUM", "LAPTOP", "open_page"]

ARTEFACTS = ROOT / "tests" / "artefacts"
# the smallest common laptop screen: what the dashboard must fit
LAPTOP = {"width": 1366, "height": 768}
# Debian's binary itself: /usr/bin/chromium is a wrapper script that adds flags of its own
CHROMIUM = Path("/usr/lib/chromium/chromium")


def chromium_path() -> str:
    """The system chromium, or a failure that says how to install it."""
    found = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    assert found, "no chromium: `apt-get install -y chromium` (deploy/local/install.sh does it)"
    return str(found)


@asynccontextmanager
async def open_page(viewport: dict[str, int] = LAPTOP) -> AsyncIterator[Page]:
    """A fresh page in a fresh headless chromium; console errors fail the test that reads them."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), headless=True, args=args)
        try:
            context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
            yield await context.new_page()
        finally:
            await browser.close()
