"""The archive site in a real headless Chromium, served over HTTP under a base path."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from newsletter.core.project import init_project, open_project
from newsletter.web.archive import build_archive
from tests.support.browser import axe_violations

pytestmark = pytest.mark.browser

ISSUE_ID = "2023-05-panel-reports"
BASE_PATH = "/learning-from-practice/"
PAGES = {
    "home": "index.html",
    "issue": f"issues/{ISSUE_ID}/",
    "publications": "publications/index.html",
}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sample project (its issue ships approved) built once, served from 127.0.0.1."""
    top = tmp_path_factory.mktemp("archive-browser")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("NEWSLETTER_"):
                patch.delenv(name)
        init_project(top / "project")
        # Served below a base path, as it will be in production, to prove links are relative.
        build_archive(open_project(top / "project"), top / "www" / BASE_PATH.strip("/"))
    handler = functools.partial(QuietHandler, directory=str(top / "www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{BASE_PATH}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_on_a_phone_has_no_errors_scroll_or_serious_accessibility_problems(
    page: Page, site_url: str, name: str
) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    response = page.goto(site_url + PAGES[name])
    assert response is not None and response.ok
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.lang") == "en-GB"
    stylesheet_rules = page.evaluate(
        "Array.from(document.styleSheets).reduce((n, s) => n + s.cssRules.length, 0)"
    )
    assert stylesheet_rules > 20, "the stylesheet did not load"
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at 375px wide"
    assert axe_violations(page) == []
    assert page.console_errors == []  # type: ignore[attr-defined]


def visible_items(page: Page, noun: str) -> int:
    return page.locator(f'ul[data-noun="{noun}"] > li[data-search-id]:visible').count()


def test_filter_narrows_the_lists(page: Page, site_url: str) -> None:
    page.goto(site_url)
    page.wait_for_selector("#filter[data-index-loaded]", state="attached")
    box = page.get_by_label("Filter News Updates and publications")
    assert box.is_visible()
    assert (visible_items(page, "issues"), visible_items(page, "publications")) == (1, 19)

    box.fill("invisible men")
    assert (visible_items(page, "issues"), visible_items(page, "publications")) == (1, 1)
    assert page.locator("#filter-status").inner_text() == (
        "Showing 1 of 1 issues and 1 of 19 publications."
    )
    # Words from the issue's bullets, which the home page does not show, still find it.
    box.fill("clare's law")
    assert (visible_items(page, "issues"), visible_items(page, "publications")) == (1, 0)

    box.fill("no such words anywhere")
    assert (visible_items(page, "issues"), visible_items(page, "publications")) == (0, 0)

    box.fill("")
    assert (visible_items(page, "issues"), visible_items(page, "publications")) == (1, 19)
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_without_javascript_the_full_lists_show(browser: Browser, site_url: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site_url)
        assert (visible_items(page, "issues"), visible_items(page, "publications")) == (1, 19)
        assert not page.locator("#filter").is_visible()
        assert page.locator("input").count() == 0
    finally:
        context.close()


FOCUS_PROBE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  return {
    probe: el.getAttribute('data-probe'),
    tag: el.tagName,
    text: el.textContent.trim().slice(0, 60),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth),
    visible: el.getBoundingClientRect().width > 1 && el.getBoundingClientRect().height > 1,
  };
}"""


@pytest.mark.parametrize("name", sorted(PAGES))
def test_tabbing_reaches_every_link_with_a_visible_focus_outline(
    page: Page, site_url: str, name: str
) -> None:
    page.goto(site_url + PAGES[name])
    links = page.evaluate(
        """() => Array.from(document.querySelectorAll('a[href]')).map((a, i) => {
             a.setAttribute('data-probe', String(i)); return a.textContent.trim(); })"""
    )
    assert len(links) > 3
    reached: set[str] = set()
    for _ in range(len(links) + 10):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_PROBE)
        if focused is None:
            continue
        if focused["probe"] is not None and focused["probe"] in reached:
            break  # round the page and back to the start
        assert focused["outlineStyle"] != "none" and focused["outlineWidth"] >= 2, focused
        assert focused["visible"], focused
        if focused["probe"] is not None:
            reached.add(focused["probe"])
    missed = [links[i] for i in range(len(links)) if str(i) not in reached]
    assert missed == []


def test_site_works_opened_from_disk(page: Page, tmp_path: Path, project_dir: Path) -> None:
    out = tmp_path / "site"
    build_archive(open_project(project_dir), out, drafts=True)
    page.goto((out / "index.html").as_uri())
    page.get_by_role(
        "link", name="Reports from the Child Safeguarding Practice Review Panel"
    ).click()
    page.wait_for_load_state("load")
    assert page.url == (out / "issues" / ISSUE_ID / "index.html").as_uri()
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("Arial")
    page.get_by_role("link", name="Panel publications", exact=True).click()
    assert page.url == (out / "publications" / "index.html").as_uri()
    page.get_by_role("link", name="News Updates", exact=True).click()
    page.get_by_label("Filter News Updates and publications").fill("invisible")
    assert (visible_items(page, "issues"), visible_items(page, "publications")) == (1, 1)
    assert page.console_errors == []  # type: ignore[attr-defined]
