"""Every studio page at 320 px wide and by keyboard alone, with no serious axe violations.

Fails, never skips, when Chromium is missing (tests/support/browser.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from newsletter.audience.suppression import add_suppression
from tests.support.browser import axe_violations
from tests.support.project import SAMPLE_ISSUE
from tests.web.studio.conftest import StudioProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ISSUE = f"/issues/{SAMPLE_ISSUE}"
PAGES = [
    "/",
    "/issues/new",
    ISSUE,
    f"{ISSUE}/test",
    f"{ISSUE}/approve",
    f"{ISSUE}/send",
    f"{ISSUE}/progress",
    "/suppressed",
    "/suppressed/resubscribe?address=k.murphy%40example.com",
    f"/catalogue/new?id=practice-guidance&return={ISSUE}",
]
FOCUS_YELLOW = "rgb(255, 221, 0)"  # the Design System's focus colour


def _sign_in(page: Page, studio: StudioProcess) -> None:
    page.goto(studio.start_url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Issues")


@pytest.mark.parametrize("width", [320, 1280])
def test_every_page_fits_and_passes_axe(page: Page, studio: StudioProcess, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    _sign_in(page, studio)
    for path in PAGES:
        page.goto(studio.base_url + path)
        expect(page.locator("h1")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, (path, overflow)
        assert axe_violations(page) == [], path
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_a_missing_page_says_so_plainly(page: Page, studio: StudioProcess) -> None:
    _sign_in(page, studio)
    response = page.goto(studio.base_url + "/issues/no-such-issue")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    assert axe_violations(page) == []


def _tab_to(page: Page, selector: str, most: int = 60) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_editing_and_saving_by_keyboard_alone(page: Page, studio: StudioProcess) -> None:
    _sign_in(page, studio)
    page.goto(studio.base_url + ISSUE)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    _tab_to(page, "#title")
    page.keyboard.press("Control+A")
    page.keyboard.type("Typed without a mouse")
    _tab_to(page, "#sections-0-audience")
    focused_box = page.evaluate(
        "getComputedStyle(document.activeElement.nextElementSibling, '::before').outlineStyle"
        " + getComputedStyle(document.activeElement.nextElementSibling, '::after').opacity"
    )
    assert focused_box  # the checkbox draws its focus ring on its label
    page.keyboard.press("Shift+Tab")
    for _ in range(60):  # back up to the first Save button
        if page.evaluate("document.activeElement.value === 'save'"):
            break
        page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Save").first).to_be_focused()
    background = page.evaluate("getComputedStyle(document.activeElement).backgroundColor")
    assert background == FOCUS_YELLOW  # the focus is visible
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Saved to issues/{SAMPLE_ISSUE}.yaml")).to_be_visible()
    assert "title: Typed without a mouse" in studio.issue_path().read_text(encoding="utf-8")


def test_resubscribing_asks_first(page: Page, studio: StudioProcess) -> None:
    suppressed = Path(studio.project_dir) / "recipients" / "suppressed.csv"
    add_suppression(suppressed, "asked@example.org", "manual", "2023-06-01")
    _sign_in(page, studio)
    page.goto(studio.base_url + "/suppressed?q=asked")
    page.get_by_role("link", name="Resubscribe asked@example.org").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("asked@example.org again?")
    assert "asked@example.org" in suppressed.read_text(encoding="utf-8")  # asking changed nothing
    page.get_by_role("link", name="No, go back").click()
    assert "asked@example.org" in suppressed.read_text(encoding="utf-8")
