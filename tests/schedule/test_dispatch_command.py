"""`newsletter dispatch` and `newsletter schedule` against a real SMTP server, at fixed times."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core.project import open_project
from tests.support.project import ISSUE, edit_issue, speed_up
from tests.support.smtp import SmtpTestServer

SEND_AT = "2023-05-15T09:00:00+01:00"
RECIPIENTS = 67  # the sample audience after merging duplicates and leaving out the suppressed


@pytest.fixture
def server(
    smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch, project_dir: Path
) -> SmtpTestServer:
    smtp_server.configure(monkeypatch)
    speed_up(project_dir)
    return smtp_server


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def dispatch_at(project_dir: Path, now: str, *args: str) -> Result:
    return run(project_dir, "dispatch", "--now", now, *args)


def log_entries(project_dir: Path) -> list[dict[str, object]]:
    path = project_dir / "var" / "dispatch.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def schedule_json(project_dir: Path, now: str) -> dict[str, object]:
    result = run(project_dir, "schedule", "--format", "json", "--now", now)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)["issues"]
    assert isinstance(entry, dict)
    return entry


def test_a_draft_is_not_sent(project_dir: Path, server: SmtpTestServer) -> None:
    edit_issue(project_dir, approved=False)
    result = dispatch_at(project_dir, SEND_AT)
    assert result.exit_code == 0, result.output
    assert "nothing to send (1 draft)" in result.output
    assert server.messages == []
    assert log_entries(project_dir) == []


def test_an_approved_issue_is_not_sent_before_its_time(
    project_dir: Path, server: SmtpTestServer
) -> None:
    edit_issue(project_dir, approved=True)
    result = dispatch_at(project_dir, "2023-05-15T08:55:00+01:00")
    assert result.exit_code == 0, result.output
    assert f"next: {ISSUE} sends in 5 minutes" in result.output
    assert server.messages == []
    assert schedule_json(project_dir, "2023-05-15T08:55:00+01:00")["state"] == "waiting"


def test_at_send_at_it_is_sent_once_and_a_second_run_sends_nothing(
    project_dir: Path, server: SmtpTestServer
) -> None:
    edit_issue(project_dir, approved=True)

    first = dispatch_at(project_dir, SEND_AT)

    assert first.exit_code == 0, first.output
    assert f"{ISSUE}: finished: {RECIPIENTS} sent" in first.output
    per_person = Counter(server.recipients())
    assert len(per_person) == RECIPIENTS
    assert set(per_person.values()) == {1}
    subjects = {m.message["Subject"] for m in server.messages}
    assert subjects == {open_project(project_dir).load_issue(ISSUE).subject}

    second = dispatch_at(project_dir, "2023-05-15T09:05:00+01:00")

    assert second.exit_code == 0, second.output
    assert "nothing to send (1 sent)" in second.output
    assert len(server.messages) == RECIPIENTS

    (entry,) = log_entries(project_dir)  # the no-op run adds no line
    assert entry["issue"] == ISSUE
    assert entry["action"] == "sent"
    assert entry["transport"] == "smtp"
    assert isinstance(entry["counts"], dict) and entry["counts"]["sent"] == RECIPIENTS
    assert entry["errors"] == []
    assert {"started_at", "finished_at", "now"} <= entry.keys()

    state = schedule_json(project_dir, "2023-05-16T09:00:00+01:00")
    assert state["state"] == "sent"
    assert state["complete"] is True
    assert state["counts"] == {"sent": RECIPIENTS, "suppressed": 4}


def test_more_than_the_window_overdue_is_held_unless_catching_up(
    project_dir: Path, server: SmtpTestServer
) -> None:
    edit_issue(project_dir, approved=True)
    late = "2023-05-23T09:00:00+01:00"  # 8 days after send_at; the window is 7

    held = dispatch_at(project_dir, late)

    assert held.exit_code == 1, held.output  # the first time: cron mails someone
    assert (
        f"{ISSUE}: overdue, held: was due 8 days ago, more than the 7-day catch-up window"
        in held.output
    )
    assert server.messages == []
    assert log_entries(project_dir)[-1]["action"] == "held"
    state = schedule_json(project_dir, late)
    assert state["state"] == "overdue" and state["detail"].startswith("overdue, held: ")

    again = dispatch_at(project_dir, "2023-05-23T09:05:00+01:00")
    assert again.exit_code == 0, again.output
    assert "reported before" in again.output

    caught_up = dispatch_at(project_dir, late, "--catch-up")

    assert caught_up.exit_code == 0, caught_up.output
    assert len(server.messages) == RECIPIENTS
    assert log_entries(project_dir)[-1]["action"] == "sent"


def test_dry_run_sends_and_writes_nothing(project_dir: Path, server: SmtpTestServer) -> None:
    edit_issue(project_dir, approved=True)
    result = dispatch_at(project_dir, SEND_AT, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"dry run: {ISSUE}: would send {RECIPIENTS} of {RECIPIENTS} via smtp" in result.output
    assert server.messages == []
    assert not (project_dir / "var").exists()


def test_a_refused_connection_stops_the_run_before_anyone_is_claimed(
    project_dir: Path, server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit_issue(project_dir, approved=True)
    server.stop()  # nothing listens on the port any more
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "hunter2-do-not-print")
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", "comms")

    result = dispatch_at(project_dir, SEND_AT)

    assert result.exit_code == 1, result.output
    assert f"{ISSUE}: not sent: cannot connect to the SMTP server 127.0.0.1:" in result.output
    assert "check NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT" in result.output
    (entry,) = log_entries(project_dir)
    assert entry["action"] == "failed"
    assert entry["errors"] and "refused" in str(entry["errors"]).lower()
    log_text = (project_dir / "var" / "dispatch.log").read_text(encoding="utf-8")
    assert "hunter2" not in log_text and "hunter2" not in result.output
    # Nobody was marked failed or queued for a retry because of the set-up.
    assert "failed_temporary" not in str(entry["counts"])
    conn = sqlite3.connect(project_dir / "var" / "ledger.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (0,)
    conn.close()
    state = schedule_json(project_dir, "2023-05-15T09:01:00+01:00")
    assert state["state"] == "failed"


def test_an_unsubscribe_between_runs_is_honoured_on_resume(
    project_dir: Path, server: SmtpTestServer
) -> None:
    edit_issue(project_dir, approved=True)
    # Someone refuses every message for now, so the issue stays unfinished...
    project = open_project(project_dir)
    server.fail("j.okafor@example.org", 451)
    first = dispatch_at(project_dir, SEND_AT)
    assert first.exit_code == 0, first.output
    assert "will be retried by the next dispatch" in first.output
    assert schedule_json(project_dir, SEND_AT)["state"] == "sending"
    assert "j.okafor@example.org" not in server.by_recipient()

    # ...then they unsubscribe; the next run must not mail them.
    server.reset()
    assert run(project_dir, "unsubscribe", "J.Okafor@example.org").exit_code == 0
    second = dispatch_at(project_dir, "2023-05-15T09:05:00+01:00")

    assert second.exit_code == 0, second.output
    assert server.messages == []
    assert project.settings.ledger_path.exists()
    assert schedule_json(project_dir, "2023-05-15T09:06:00+01:00")["state"] == "sent"


def test_schedule_table_lists_the_issue_and_its_state(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True)
    result = run(project_dir, "schedule", "--now", "2023-05-13T09:00:00+01:00")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["issue", "send", "at", "state", "approval", "detail"]
    assert lines[2].split()[:5] == [ISSUE, "2023-05-15", "09:00", "BST", "waiting"]
    assert "approved by Test Approver at 2023-05-10 14:03 BST" in lines[2]
    assert "sends in 2 days" in lines[2]


def test_lock_held_exits_3_with_one_line(project_dir: Path) -> None:
    from newsletter.schedule.dispatch_lock import dispatch_lock

    with dispatch_lock(open_project(project_dir).settings.lock_path):
        result = CliRunner().invoke(cli, ["--root", str(project_dir), "dispatch"])
    assert result.exit_code == 3
    assert len(result.output.strip().splitlines()) == 1
    assert "another dispatch is already running" in result.output
