"""Relays and providers that misbehave, end to end: unknown outcomes and refusals of the message.

A relay slow to answer the end of DATA, or one that stores a message and
then drops the line, must cost each person one copy, not one per attempt and
per run; a content filter refusing the message must stop the run, not put the
whole list on the suppression list. Real aiosmtpd and a local Postmark.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.audience.lists import read_suppressed
from newsletter.cli import cli
from tests.support.project import ISSUE, edit_issue, speed_up
from tests.support.providers import FakePostmark
from tests.support.smtp import SmtpTestServer

SEND_AT = "2023-05-15T09:00:00+01:00"
# Three people of the sample audience, none next to another in the list's order.
VICTIMS = ("j.okafor@example.org", "c.jones@example.org", "a.lopez@example.org")


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def ledger_states(project_dir: Path) -> Counter[str]:
    conn = sqlite3.connect(project_dir / "var" / "ledger.sqlite3")
    states = Counter(state for (state,) in conn.execute("SELECT state FROM deliveries"))
    conn.close()
    return states


def state_of(project_dir: Path, address: str) -> str:
    conn = sqlite3.connect(project_dir / "var" / "ledger.sqlite3")
    (state,) = conn.execute(
        "SELECT state FROM deliveries WHERE address_key = ?", (address,)
    ).fetchone()
    conn.close()
    return str(state)


def short_smtp_timeout(project_dir: Path, seconds: float = 0.3) -> None:
    path = project_dir / "newsletter.yaml"
    text, n = re.subn(
        r"(?m)^  connections: 2$",
        f"  connections: 1\n  timeout_seconds: {seconds}",
        path.read_text(),
    )
    assert n == 1
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def relay(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> SmtpTestServer:
    smtp_server.configure(monkeypatch)
    speed_up(project_dir)
    short_smtp_timeout(project_dir)
    edit_issue(project_dir, approved=True)
    return smtp_server


def copies(server: SmtpTestServer) -> dict[str, int]:
    return {address: len(got) for address, got in server.by_recipient().items()}


@pytest.mark.parametrize("misbehaviour", ["slow final reply", "store then drop"])
def test_an_unconfirmed_message_costs_one_copy_across_send_retry_and_dispatch(
    project_dir: Path, relay: SmtpTestServer, misbehaviour: str
) -> None:
    for victim in VICTIMS:
        if misbehaviour == "slow final reply":
            relay.slow_final_reply(victim, 3.0)  # the relay keeps it, and answers too late
        else:
            relay.store_then_drop(victim)

    sent = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert sent.exit_code == 1, sent.output
    assert "unknown outcome 3" in sent.output
    assert f"newsletter retry {ISSUE} --unknown" in sent.output
    assert copies(relay) == dict.fromkeys(copies(relay), 1) and len(copies(relay)) == 67
    assert {state_of(project_dir, v) for v in VICTIMS} == {"unknown"}

    # Neither retry nor the next cron ticks send them again.
    assert run(project_dir, "retry", ISSUE).exit_code == 0
    for _ in range(2):
        tick = run(project_dir, "dispatch", "--now", SEND_AT)
        assert tick.exit_code == 0, tick.output
    assert all(copies(relay)[v] == 1 for v in VICTIMS)

    report = run(project_dir, "report", ISSUE)
    assert report.exit_code == 0, report.output
    assert re.search(r"(?m)^unknown +3$", report.output)
    for victim in VICTIMS:
        assert re.search(rf"(?m)^{re.escape(victim)} +unknown +1 ", report.output)
    assert f"`newsletter retry {ISSUE} --unknown`" in report.output
    (entry,) = json.loads(run(project_dir, "schedule", "--format", "json").output)["issues"]
    assert entry["state"] == "sent" and entry["needs_attention"] == {"unknown": 3}
    assert "--unknown" in entry["detail"]

    # Only when the team asks: one more copy each, and then they are sent.
    relay.reset()
    again = run(project_dir, "retry", ISSUE, "--unknown")
    assert again.exit_code == 0, again.output
    assert copies(relay) == dict.fromkeys(VICTIMS, 1)
    assert ledger_states(project_dir) == {"sent": 67, "suppressed": 4}


def test_a_content_filter_refusing_everyone_stops_the_run_and_suppresses_nobody(
    project_dir: Path, relay: SmtpTestServer
) -> None:
    suppressed_before = (project_dir / "recipients" / "suppressed.csv").read_text()
    relay.fail("*", 550, stage="DATA", text="5.7.1 Message rejected as spam by Content Filtering")

    result = run(project_dir, "send", ISSUE, "--send", "--yes")

    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "refused the message itself, not the recipient" in line
    assert "5.7.1 Message rejected as spam" in line and "Traceback" not in result.output
    assert (project_dir / "recipients" / "suppressed.csv").read_text() == suppressed_before
    assert ledger_states(project_dir) == {"pending": 67, "suppressed": 4}
    # Once the content is fixed (here: the filter relents), the same command sends to all.
    relay.reset()
    assert run(project_dir, "send", ISSUE, "--send", "--yes").exit_code == 0
    assert copies(relay) == dict.fromkeys(copies(relay), 1) and len(copies(relay)) == 67


def test_a_refused_message_mid_run_keeps_what_was_sent_and_gives_the_rest_back(
    project_dir: Path, relay: SmtpTestServer
) -> None:
    relay.fail(VICTIMS[1], 554, stage="DATA", text="5.6.0 Message content rejected")

    result = run(project_dir, "send", ISSUE, "--send", "--yes")

    assert result.exit_code == 1 and "5.6.0 Message content rejected" in result.stderr
    states = ledger_states(project_dir)
    assert states["sent"] == len(relay.messages) > 0
    assert states["pending"] == 67 - states["sent"] and states["failed-permanent"] == 0
    assert state_of(project_dir, VICTIMS[1]) == "pending"
    suppressed, _ = read_suppressed(project_dir / "recipients" / "suppressed.csv")
    assert VICTIMS[1] not in suppressed


def test_a_bad_mailbox_is_still_that_persons_failure(
    project_dir: Path, relay: SmtpTestServer
) -> None:
    relay.fail(VICTIMS[0], 550, text=f"5.1.1 <{VICTIMS[0]}>: Recipient address rejected")
    result = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 1
    assert ledger_states(project_dir) == {"sent": 66, "failed-permanent": 1, "suppressed": 4}
    suppressed, _ = read_suppressed(project_dir / "recipients" / "suppressed.csv")
    assert suppressed[VICTIMS[0]].reason == "hard-bounce"


@pytest.fixture
def postmark_project(
    project_dir: Path, postmark_server: FakePostmark, monkeypatch: pytest.MonkeyPatch
) -> Path:
    postmark_server.configure(monkeypatch)
    speed_up(project_dir)
    return project_dir


def test_a_provider_that_hangs_up_after_taking_the_batch_is_unknown_not_resent(
    postmark_project: Path, postmark_server: FakePostmark
) -> None:
    postmark_server.accept_then_hang_up()

    sent = run(postmark_project, "send", ISSUE, "--send", "--yes")

    assert sent.exit_code == 1, sent.output
    assert ledger_states(postmark_project) == {"unknown": 67, "suppressed": 4}
    assert run(postmark_project, "retry", ISSUE).exit_code == 0
    again = run(postmark_project, "send", ISSUE, "--send", "--yes")
    assert "67 message(s) were handed over but never confirmed" in again.output
    assert len(postmark_server.requests) == 1  # never sent again without being asked
    assert len(postmark_server.sent_to()) == 67


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (413, {"ErrorCode": 0, "Message": "Payload Too Large"}),
        (422, {"ErrorCode": 410, "Message": "Too many batch messages."}),
    ],
)
def test_a_provider_refusing_the_request_suppresses_nobody(
    postmark_project: Path, postmark_server: FakePostmark, status: int, body: dict[str, object]
) -> None:
    suppressed_before = (postmark_project / "recipients" / "suppressed.csv").read_text()
    postmark_server.respond(status, body=body)
    result = run(postmark_project, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert f"HTTP {status}" in line and "nobody was marked as failed or suppressed" in line
    assert ledger_states(postmark_project) == {"pending": 67, "suppressed": 4}
    suppressed_after = (postmark_project / "recipients" / "suppressed.csv").read_text()
    assert suppressed_after == suppressed_before
