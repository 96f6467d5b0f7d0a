"""The unsubscribe pages in a real headless Chromium, as a person meets them, checked with axe.

These tests fail, never skip, when Chromium is missing (see tests/support/browser.py).
Screenshots are written to out/screenshots/.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import axe_violations
from tests.support.serve import ServeProcess

pytestmark = pytest.mark.browser

SCREENSHOTS_DIR = Path(__file__).resolve().parents[2] / "out" / "screenshots"
ADDRESS = "jo.bloggs@example.org"


def _suppressed(server: ServeProcess) -> dict[str, str]:
    with server.suppressed_path.open(newline="", encoding="utf-8") as handle:
        return {row["email"]: row["reason"] for row in csv.DictReader(handle)}


def _accessible(page: Page, name: str, console_errors: tuple[str, ...] = ()) -> None:
    assert axe_violations(page) == [], name
    assert page.console_errors == list(console_errors), name  # type: ignore[attr-defined]
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS_DIR / f"unsubscribe-{name}.png"), full_page=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 375])
def test_leaving_and_rejoining_by_keyboard_with_no_serious_axe_violations(
    page: Page, serve_server: ServeProcess, scheme: str, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    name = f"{width}-{scheme}"

    page.goto(serve_server.link(ADDRESS))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Unsubscribe from the")
    expect(page.get_by_text(ADDRESS)).to_be_visible()
    assert page.get_by_role("button").count() == 1
    _accessible(page, f"confirm-{name}")
    assert ADDRESS not in _suppressed(serve_server)  # opening the page changed nothing

    button = page.get_by_role("button", name="Unsubscribe")
    button.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    assert _suppressed(serve_server)[ADDRESS] == "one-click"
    _accessible(page, f"done-{name}")

    page.get_by_role("button", name=f"Resubscribe {ADDRESS}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed again")
    assert ADDRESS not in _suppressed(serve_server)
    _accessible(page, f"resubscribed-{name}")


def test_a_broken_link_page_is_accessible_and_offers_the_mailto(
    page: Page, serve_server: ServeProcess
) -> None:
    response = page.goto(serve_server.link(ADDRESS).replace("token=", "token=0"))
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This link is not valid")
    expect(page.get_by_role("link", name="unsubscribe@example.org").first).to_have_attribute(
        "href",
        "mailto:unsubscribe@example.org?subject=Children%27s%20MARS%20Board%20News%20Update%3A%20unsubscribe",
    )
    assert page.get_by_role("button").count() == 0
    # The only console message is Chromium noting the page's own 403 status.
    _accessible(
        page,
        "invalid",
        ("Failed to load resource: the server responded with a status of 403 (FORBIDDEN)",),
    )


def test_the_page_is_readable_at_200_percent_zoom_on_a_phone(
    page: Page, serve_server: ServeProcess
) -> None:
    # WCAG 1.4.10 reflow: at 320 CSS px nothing scrolls sideways, even a long address.
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(serve_server.link("a.very.long.name.of.a.practitioner+newsletter@example.org"))
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 320
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_in_viewport()
