"""Seeing what was sent to the outbox: where it went, a list, and pages that show each email."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from playwright.sync_api import Page

from newsletter.cli import cli
from newsletter.web.outbox_view import list_outbox, write_outbox_pages
from tests.support.project import SAMPLE_ISSUE, speed_up


def invoke(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def send_and_test(project_dir: Path) -> tuple[Result, Result]:
    speed_up(project_dir)  # what the outbox shows is the subject here, not the pace
    sent = invoke(project_dir, "send", SAMPLE_ISSUE, "--send", "--yes", "--transport", "outbox")
    tested = invoke(project_dir, "send", SAMPLE_ISSUE, "--test-to", "me@example.org")
    assert sent.exit_code == 0, sent.output
    assert tested.exit_code == 0, tested.output
    return sent, tested


def test_a_send_says_where_the_mail_went_and_test_copies_are_kept_apart(
    project_dir: Path,
) -> None:
    sent, tested = send_and_test(project_dir)
    outbox = project_dir / "outbox"
    for result in (sent, tested):
        assert f"The messages are in {outbox}" in result.stdout
        assert "newsletter outbox --open" in result.stdout
    assert len(list((outbox / "new").iterdir())) == 67  # the real send only
    assert len(list((outbox / "tests" / "new").iterdir())) == 2
    # A dry run sends nothing, so it has nothing to point at.
    assert "newsletter outbox" not in invoke(project_dir, "send", SAMPLE_ISSUE).stdout


def test_outbox_lists_each_message_real_or_test(project_dir: Path) -> None:
    empty = invoke(project_dir, "outbox")
    assert empty.exit_code == 0, empty.output
    assert "is empty: nothing has been sent to it yet" in empty.stdout
    send_and_test(project_dir)

    listed = json.loads(invoke(project_dir, "outbox", "--format", "json").stdout)
    assert [m["kind"] for m in listed].count("real") == 67
    tests = [m for m in listed if m["kind"] == "test copy"]
    assert len(tests) == 2
    assert {m["to"] for m in tests} == {"Sample Practitioner <me@example.org>"}
    assert all(m["subject"].startswith("[TEST: ") for m in tests)
    assert all(m["issue"] == SAMPLE_ISSUE for m in listed)
    table = invoke(project_dir, "outbox").stdout
    assert "Joseph Okafor <j.okafor@example.org>" in table
    assert table.splitlines()[0].split() == ["when", "kind", "to", "subject"]


def test_open_writes_private_pages_and_opens_the_index_in_the_browser(
    project_dir: Path, tmp_path: Path
) -> None:
    send_and_test(project_dir)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n', encoding="utf-8")
    browser.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), "outbox", "--open"],
        env={**env, "BROWSER": str(browser)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    index = project_dir / "var" / "outbox-view" / "index.html"
    assert opened.read_text(encoding="utf-8") == index.as_uri()
    assert f"Opened {index}" in result.stdout
    pages = list(index.parent.glob("message-*.html"))
    assert len(pages) == 69
    for path in (index, *pages):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # they name recipients
    assert stat.S_IMODE(index.parent.stat().st_mode) == 0o700


@pytest.mark.browser
def test_each_page_shows_the_email_as_the_recipient_sees_it(
    project_dir: Path, tmp_path: Path, page: Page
) -> None:
    send_and_test(project_dir)
    outbox = project_dir / "outbox"
    messages = list_outbox(outbox)
    index = write_outbox_pages(messages, outbox, tmp_path / "view")

    page.goto(index.as_uri())
    assert page.locator("h1").inner_text() == "The outbox: 67 sent, 2 test copies"
    assert page.locator("tbody tr").count() == 69
    real = next(n for n, m in enumerate(messages, 1) if "j.okafor@example.org" in m.to)
    page.locator("tbody tr").nth(real - 1).locator("a").click()
    frame = page.frame_locator("iframe")
    # The personalised email, rendered: the greeting and a section heading.
    frame.get_by_text("Dear Joseph Okafor,").wait_for()
    assert frame.get_by_text("It was Hard to Escape").first.is_visible()
    assert page.locator("iframe").get_attribute("sandbox") == ""  # no script in it runs
    assert page.console_errors == []  # type: ignore[attr-defined]
