"""Real `newsletter dispatch` processes: two at once, and one killed mid-send.

These are what cron does on a bad day: a slow run still going when the next
tick starts, and a server that dies (or is rebooted) in the middle of a send.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.audience.lists import iter_audience
from newsletter.core.errors import NewsletterError
from newsletter.core.project import open_project
from newsletter.ledger.deliveries import Ledger
from newsletter.schedule.due import issue_schedule, parse_now
from tests.support.project import ISSUE, edit_issue, speed_up
from tests.support.smtp import SmtpTestServer

pytestmark = pytest.mark.slow  # real dispatch processes, killed and run again

SEND_AT = "2023-05-15T09:00:00+01:00"
NOW = ("--now", SEND_AT)


class SlowSmtpServer(SmtpTestServer):
    """Takes a little while over each message, so runs overlap and can be caught mid-send."""

    data_delay = 0.04

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.data_delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_server(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowSmtpServer]:
    server = SlowSmtpServer()
    server.configure(monkeypatch)  # the environment the subprocesses inherit
    speed_up(project_dir)
    edit_issue(project_dir, approved=True)
    yield server
    server.stop()


def start_dispatch(project_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), "dispatch", *NOW],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def audience_keys(project_dir: Path) -> set[str]:
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE)
    return {r.key for r, _ in iter_audience(project.audience_source(), issue)}


def ledger_keys(project_dir: Path, state: str) -> set[str]:
    with Ledger(project_dir / "var" / "ledger.sqlite3", create=False) as ledger:
        return {row.address_key for row in ledger.rows(ISSUE) if row.state == state}


def some_sent(project_dir: Path) -> bool:
    try:
        return bool(ledger_keys(project_dir, "sent"))
    except (NewsletterError, sqlite3.OperationalError):
        return False  # the other process has not created the ledger yet


def test_two_dispatches_at_once_send_each_message_once(
    project_dir: Path, slow_server: SlowSmtpServer
) -> None:
    first, second = start_dispatch(project_dir), start_dispatch(project_dir)
    results = [(p.wait(timeout=120), *p.communicate()) for p in (first, second)]

    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results
    (_, _, refused_err) = next(r for r in results if r[0] == 3)
    assert refused_err.strip().count("\n") == 0  # one line, for cron mail
    assert "another dispatch is already running" in refused_err
    (_, sent_out, _) = next(r for r in results if r[0] == 0)
    assert "finished: 67 sent" in sent_out

    per_person = {k: len(v) for k, v in slow_server.by_recipient().items()}
    assert set(per_person) == audience_keys(project_dir)
    assert set(per_person.values()) == {1}


def test_a_dispatch_killed_mid_send_is_completed_by_the_next_without_repeats(
    project_dir: Path, slow_server: SlowSmtpServer
) -> None:
    everyone = audience_keys(project_dir)
    victim = start_dispatch(project_dir)
    try:
        deadline = time.monotonic() + 60
        # Kill it once some rows are recorded `sent` and others are still being sent.
        while time.monotonic() < deadline and not some_sent(project_dir):
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.01)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    sent_before = ledger_keys(project_dir, "sent")
    in_flight = ledger_keys(project_dir, "sending")
    assert 0 < len(sent_before) < len(everyone)  # really killed in the middle
    assert in_flight
    project = open_project(project_dir)
    (entry,) = issue_schedule(project, parse_now(SEND_AT, project.settings.zone))
    assert entry.state == "sending"

    # The next cron tick: not refused by a stale lock, and it finishes the issue.
    rerun = start_dispatch(project_dir)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, (out, err)
    assert "finished:" in out

    received = slow_server.by_recipient()
    assert set(received) == everyone  # nobody missed
    for key in sent_before:
        assert len(received[key]) == 1, f"{key} was marked sent, then mailed again"
    repeated = {key for key, copies in received.items() if len(copies) > 1}
    assert repeated <= in_flight  # only messages that might have gone out can go again
    for key in repeated:
        ids = {copy.message["Message-ID"] for copy in received[key]}
        assert len(ids) == 1, f"{key} got copies with different Message-IDs: {ids}"
    assert ledger_keys(project_dir, "sent") == everyone
    (entry,) = issue_schedule(project, parse_now(SEND_AT, project.settings.zone))
    assert entry.state == "sent"
