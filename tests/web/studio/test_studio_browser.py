"""A comms officer's whole round in the studio, in a real headless Chromium, checked with axe.

Start the studio; make the next issue from the previous one; change its
title and a bullet; add a section about a catalogue publication; watch an
error appear next to a field and go; preview at phone width; save (the
file keeps its comments); send a test copy to the outbox; approve; send to
the outbox and watch the progress finish; find one person in the report;
put someone on the do-not-send list and see the next dry run leave them out.

These tests fail, never skip, when Chromium is missing (tests/support/browser.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect

from newsletter.core.project import open_project
from newsletter.delivery.plan import plan_send
from tests.support.browser import axe_violations
from tests.web.studio.conftest import StudioProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS_DIR = Path(__file__).resolve().parents[3] / "out" / "screenshots"
NEW_ID = "2023-08-news-update"
LEFT_OUT = "zoe.clarke@example.org"


def _accessible(page: Page, name: str) -> None:
    assert axe_violations(page) == [], name
    assert page.console_errors == [], name  # type: ignore[attr-defined]
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS_DIR / f"studio-{name}.png"), full_page=True)


def _expected_status_message(page: Page, status: int) -> None:
    """Chromium logs a page answered with an error status; that one line is expected."""
    errors = page.console_errors  # type: ignore[attr-defined]
    assert len(errors) == 1 and f"status of {status}" in errors[0], errors
    errors.clear()


def _outbox_files(root: Path) -> list[Path]:
    outbox = root / "outbox"
    return sorted(p for p in outbox.rglob("*") if p.is_file()) if outbox.exists() else []


def _wait_for_check(page: Page, before: str | None) -> None:
    """Wait until the live check that follows a change has come back."""
    page.wait_for_function(
        "(before) => document.body.dataset.checked && document.body.dataset.checked !== before",
        arg=before,
        timeout=15000,
    )


def _checked(page: Page) -> str | None:
    return page.evaluate("document.body.dataset.checked || null")


def _comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def _make_and_edit_the_next_issue(page: Page, studio: StudioProcess) -> list[str]:
    """Returns the comment lines of the new issue file as `newsletter new` wrote them."""
    page.goto(studio.start_url)
    expect(page).to_have_url(studio.base_url + "/")  # the token left the address bar
    expect(page.get_by_role("heading", level=1)).to_have_text("Issues")
    _accessible(page, "home")

    page.get_by_role("link", name="Start a new issue").first.click()
    _accessible(page, "new")
    page.get_by_label("Name of the new issue file").fill(NEW_ID)
    expect(page.get_by_label("A copy of 2023-05-panel-reports")).to_be_checked()
    page.get_by_role("button", name="Start the issue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit the issue")
    expect(page.locator("iframe.studio-frame").first).to_be_visible()
    _accessible(page, "edit")
    comments = _comments(studio.issue_path(NEW_ID).read_text(encoding="utf-8"))
    assert comments  # `new` explains itself in comments at the top

    before = _checked(page)
    page.get_by_label("Title", exact=True).fill("News Update, August 2023")
    bullets = page.locator("#sections-0-points")
    text = bullets.input_value()
    bullets.fill(
        text.replace("Responding to reachable/critical moments", "Responding to critical moments")
    )
    _wait_for_check(page, before)

    # An error appears next to its field as soon as it is made, and goes when fixed.
    before = _checked(page)
    page.get_by_label("Subject line").fill("")
    _wait_for_check(page, before)
    error = page.locator("#subject-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("`subject` is required")
    expect(page.locator(".govuk-error-summary")).to_contain_text("`subject` is required")
    _accessible(page, "edit-error")
    before = _checked(page)
    page.get_by_label("Subject line").fill("News Update, August 2023")
    _wait_for_check(page, before)
    expect(error).to_be_hidden()
    expect(page.locator(".govuk-error-summary")).to_have_count(0)

    # A new section, about a publication from the catalogue (a form post, so it works without JS).
    page.get_by_role("button", name="Add a section").click()
    count = page.locator("fieldset.studio-section").count()
    last = f"sections-{count - 1}-"
    page.locator(f"#{last}title").fill("Practice guidance from the Panel")
    page.locator(f"#{last}publication").fill("practice-guidance")
    page.locator(f"#{last}lead_in").fill("What the guidance asks:")
    page.locator(f"#{last}points").fill("- Notify serious incidents\n  - within five working days")
    before = _checked(page)
    page.locator(f"#{last}prompts").fill("Are we doing this?")
    _wait_for_check(page, before)
    expect(page.locator(".govuk-error-summary")).to_have_count(0)

    # The preview at phone width.
    page.get_by_role("button", name="Phone width").click()
    expect(page.locator("iframe.studio-frame").first).to_have_attribute("width", "375")
    frame = page.frame_locator("iframe.studio-frame").first
    expect(frame.get_by_text("Responding to critical moments")).to_be_visible()
    _accessible(page, "edit-phone")

    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_text(f"Saved to issues/{NEW_ID}.yaml")).to_be_visible()
    _accessible(page, "saved")
    return comments


def _check_the_saved_file(studio: StudioProcess, comments: list[str]) -> None:
    text = studio.issue_path(NEW_ID).read_text(encoding="utf-8")
    assert _comments(text) == comments  # every comment kept, in order
    data = yaml.safe_load(text)
    assert data["title"] == "News Update, August 2023"
    assert data["sections"][0]["points"][0] == "Responding to critical moments in children's lives"
    added = data["sections"][-1]
    assert added["publication"] == "practice-guidance"
    assert added["points"] == [
        {"text": "Notify serious incidents", "points": ["within five working days"]}
    ]
    assert data["sections"][0]["themes"]  # a key the form does not show, kept


def _test_copy_approve_and_send(page: Page, studio: StudioProcess) -> None:
    page.get_by_role("link", name="Send a test copy").click()
    _accessible(page, "test-copy")
    page.get_by_label("Email addresses").fill("not an address")
    page.get_by_role("button", name="Send a test copy").click()
    expect(page.locator("#addresses-error")).to_be_visible()
    assert _outbox_files(studio.project_dir) == []
    _expected_status_message(page, 400)
    page.get_by_label("Email addresses").fill("jo.tester@example.org; sam.tester@example.org")
    page.get_by_role("button", name="Send a test copy").click()
    expect(page.get_by_role("heading", name="Test copies sent")).to_be_visible()
    expect(page.locator("#copies")).to_contain_text("sam.tester@example.org")
    expect(page.locator("#copies")).to_contain_text("kept at")
    copies = _outbox_files(studio.project_dir)
    assert copies and all("[TEST" in p.read_text(errors="replace") for p in copies)
    _accessible(page, "test-copy-sent")

    page.goto(f"{studio.base_url}/issues/{NEW_ID}/approve")
    expect(page.locator("#approval-summary")).to_have_text("not approved")
    _accessible(page, "approve")
    page.get_by_label("Your name").fill("Sam Approver")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", name="Approved")).to_be_visible()
    assert "Sam Approver" in (studio.project_dir / "approvals" / f"{NEW_ID}.yaml").read_text()
    _accessible(page, "approved")

    page.get_by_role("link", name="Send now or schedule").click()
    _accessible(page, "send")
    people = int(page.locator("#plan-to-send").inner_text())
    assert people > 0
    page.get_by_role("button", name=re.compile(r"^Send now to \d+ people$")).click()
    expect(page.locator("#progress-heading")).to_have_text("Sent", timeout=60000)
    expect(page.locator("#progress-counts")).to_contain_text(f"sent: {people}")
    done, total = re.findall(r"\d+", page.locator("#progress-text").inner_text())[:2]
    assert done == total  # everyone handled: sent, or left out as on the do-not-send list
    _accessible(page, "progress")
    sent = [
        p for p in _outbox_files(studio.project_dir) if "[TEST" not in p.read_text(errors="replace")
    ]
    assert len(sent) == people


def _report_and_do_not_send(page: Page, studio: StudioProcess) -> None:
    page.get_by_role("link", name="See who it went to").click()
    _accessible(page, "report")
    page.get_by_label("Search by email address").fill("j.okafor")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#report-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("j.okafor@example.org")

    project = open_project(studio.project_dir)
    issue = project.load_issue("2023-05-panel-reports")
    before = plan_send(project, issue)
    page.get_by_role("link", name="Do-not-send list").click()
    _accessible(page, "suppressed")
    page.get_by_label("Email address", exact=True).fill(LEFT_OUT)
    page.get_by_label("Why").fill("asked by phone")
    page.get_by_role("button", name="Add to the do-not-send list").click()
    expect(page.get_by_text(f"{LEFT_OUT} will not be sent the newsletter.")).to_be_visible()
    after = plan_send(open_project(studio.project_dir), issue)
    assert after.suppressed == before.suppressed + 1
    assert after.recipients == before.recipients - 1

    page.get_by_role("link", name=f"Resubscribe {LEFT_OUT}").click()
    _accessible(page, "resubscribe")
    page.get_by_role("button", name=f"Yes, resubscribe {LEFT_OUT}").click()
    expect(page.get_by_text(f"{LEFT_OUT} will be sent the newsletter again.")).to_be_visible()
    assert plan_send(open_project(studio.project_dir), issue).recipients == before.recipients


def test_a_comms_officer_writes_checks_approves_and_sends_an_issue(
    page: Page, studio: StudioProcess
) -> None:
    comments = _make_and_edit_the_next_issue(page, studio)
    _check_the_saved_file(studio, comments)
    _test_copy_approve_and_send(page, studio)
    _report_and_do_not_send(page, studio)
