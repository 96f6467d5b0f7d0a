"""A real headless Chromium driven by Playwright, for the browser tests.

The system Chromium is used (`NEWSLETTER_CHROMIUM`, else /usr/bin/chromium):
Playwright's own browser download cannot work on our machines. If it is
missing the tests FAIL with a message saying how to install it; they never
skip, so a CI run without a browser cannot pass by accident.

Fixtures:
- `browser`: one Chromium for the whole session.
- `page`: a fresh page per test; console errors and page errors are collected
  in `page.console_errors` (a list of strings) so tests can assert there are none.
- `axe_violations(page, impacts=("serious", "critical"))`: runs axe-core in the
  page and returns the violations of those impacts, each as a short string.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium to drive; fails the test (never skips) when there is none."""
    configured = os.environ.get("NEWSLETTER_CHROMIUM")
    candidates = [configured] if configured else []
    candidates += [
        "/usr/bin/chromium",
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "Chromium is not installed: browser tests need it. "
        "Install it with `apt-get install -y chromium` or set NEWSLETTER_CHROMIUM.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    new_page = context.new_page()
    errors: list[str] = []
    new_page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    new_page.on("pageerror", lambda error: errors.append(str(error)))
    new_page.console_errors = errors  # type: ignore[attr-defined]
    try:
        yield new_page
    finally:
        context.close()


_AXE = Axe()


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of the given impacts on the current page, as readable lines."""
    results: Any = _AXE.run(page)
    found = []
    for violation in results.response["violations"]:
        if violation.get("impact") in impacts:
            targets = [", ".join(node["target"]) for node in violation["nodes"]][:3]
            found.append(
                f"{violation['impact']}: {violation['id']}: {violation['help']} at {targets}"
            )
    return found
