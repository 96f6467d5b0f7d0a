"""The preview and the email in a real headless Chromium (Playwright, system binary).

These tests fail, never skip, when Chromium is missing (see tests/support/browser.py).
Screenshots of the email at each width are written to out/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Frame, Page, expect

from newsletter.core.project import Project
from newsletter.web.preview import PreviewServer, start_preview
from tests.support.browser import axe_violations

pytestmark = pytest.mark.browser

ISSUE_ID = "2023-05-panel-reports"
VARIANTS = ("all-sections", "without-bruising-in-non-mobile-infants")
BRUISING = "Bruising in non-mobile infants"
SCREENSHOTS_DIR = Path(__file__).resolve().parents[2] / "out" / "screenshots"


@pytest.fixture
def server(project: Project) -> Iterator[PreviewServer]:
    running = start_preview(project, ISSUE_ID, port=0)
    try:
        yield running
    finally:
        running.stop()


def email_frame(page: Page) -> Frame:
    page.wait_for_selector("#email-frame")
    handle = page.query_selector("#email-frame")
    assert handle is not None
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_load_state("load")
    return frame


def section_titles(frame: Frame) -> list[str]:
    return [" ".join(t.split()) for t in frame.locator("h2").all_inner_texts()]


def test_preview_page_loads_with_no_console_errors_or_serious_axe_violations(page, server):
    page.goto(server.url)
    frame = email_frame(page)
    assert BRUISING in section_titles(frame)
    expect(page.locator("#subject")).to_contain_text("News Update, May 2023")
    assert axe_violations(page) == []
    assert page.console_errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_has_no_serious_axe_violations_in_light_or_dark(page, server, variant):
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{server.url}email/{variant}.html")
        assert axe_violations(page) == [], f"{variant} in {scheme} mode"
    assert page.console_errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("variant", VARIANTS)
def test_at_phone_width_no_horizontal_scroll_and_buttons_are_44px(page, server, variant):
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{server.url}email/{variant}.html")
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1] == 375
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('a.button-a, a.share-a'))"
        ".map(a => a.getBoundingClientRect().height)"
    )
    assert len(heights) >= 10
    assert min(heights) >= 44
    # The phone rules apply: buttons fill the column instead of sitting at their text width.
    button_width = page.evaluate("document.querySelector('table.button-table').offsetWidth")
    assert button_width > 300
    if variant == "all-sections":
        SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOTS_DIR / "email-phone.png"),
            full_page=True,
            clip={"x": 0, "y": 0, "width": 375, "height": 1500},
        )
        page.screenshot(path=str(SCREENSHOTS_DIR / "email-phone-full.png"), full_page=True)


def test_dark_mode_darkens_the_email_and_keeps_buttons_white_on_their_colour(page, server):
    look = (
        "['.content', 'h2', 'a.button-a'].map(s => {"
        " const style = getComputedStyle(document.querySelector(s));"
        " return [style.backgroundColor, style.color]; })"
    )
    page.set_viewport_size({"width": 375, "height": 800})
    seen = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{server.url}email/all-sections.html")
        seen[scheme] = page.evaluate(look)
    white, blue = "rgb(255, 255, 255)", "rgb(29, 112, 184)"
    assert seen["light"] == [
        [white, "rgb(11, 12, 12)"],
        ["rgba(0, 0, 0, 0)", "rgb(11, 12, 12)"],
        [blue, white],
    ]
    assert seen["dark"] == [
        ["rgb(30, 30, 30)", "rgb(243, 242, 241)"],
        ["rgba(0, 0, 0, 0)", "rgb(243, 242, 241)"],
        [blue, white],
    ]


def test_at_desktop_width_the_column_is_capped_at_600px(page, server):
    page.set_viewport_size({"width": 800, "height": 900})
    page.goto(f"{server.url}email/all-sections.html")
    column = page.evaluate("document.querySelector('.container').getBoundingClientRect().width")
    assert column == 600
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS_DIR / "email-desktop.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 800, "height": 1400},
    )
    page.screenshot(path=str(SCREENSHOTS_DIR / "email-desktop-full.png"), full_page=True)


def test_width_switch_shows_the_email_at_phone_width_without_scrolling(page, server):
    page.goto(server.url)
    email_frame(page)
    page.get_by_role("button", name="Phone (375px)").click()
    expect(page.get_by_role("button", name="Phone (375px)")).to_have_attribute(
        "aria-pressed", "true"
    )
    frame = email_frame(page)
    widths = frame.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths == [375, 375]
    assert "width=phone" in page.url
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS_DIR / "preview-phone.png"))
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_switching_variant_changes_the_sections_shown(page, server):
    page.goto(server.url)
    assert BRUISING in section_titles(email_frame(page))
    page.get_by_role("link", name="Without: Bruising in non-mobile infants (23 recipients)").click()
    page.wait_for_url("**variant=without-bruising-in-non-mobile-infants**")
    titles = section_titles(email_frame(page))
    assert BRUISING not in titles and len(titles) == 9
    expect(page.get_by_role("link", name="All sections (44 recipients)")).not_to_have_attribute(
        "aria-current", "page"
    )
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_saving_the_issue_reloads_the_page_and_errors_show_in_place(page, server, project_dir):
    issue_path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    original = issue_path.read_text(encoding="utf-8")
    page.goto(server.url)
    email_frame(page)

    issue_path.write_text(
        original.replace("subject: \"News Update, May 2023:", "subject: \"News Update (edited), May 2023:"),
        encoding="utf-8",
    )  # fmt: skip
    expect(page.locator("#subject")).to_contain_text("News Update (edited)", timeout=5000)

    issue_path.write_text(original.replace("date: 2023-05-15", "date: 2023-13-45"), "utf-8")
    expect(page.locator("#problems")).to_contain_text(f"{issue_path}:", timeout=5000)

    issue_path.write_text(original, encoding="utf-8")
    expect(page.locator("#subject")).to_have_text(
        "News Update, May 2023: reports from the Child Safeguarding Practice Review Panel",
        timeout=5000,
    )
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_saving_a_template_reloads_the_email(page, server, project_dir):
    page.goto(server.url)
    assert "Dear " in email_frame(page).inner_text("body")
    intro = project_dir / "templates" / "email" / "_intro.html.j2"
    intro.write_text(
        intro.read_text(encoding="utf-8").replace("<h1>", "<h1>Draft: "), encoding="utf-8"
    )
    expect(page.frame_locator("#email-frame").locator("h1")).to_contain_text(
        "Draft: Reports", timeout=5000
    )
