"""`rate.per_day`: a run stops cleanly at the cap and a later run, once 24 hours have passed,
carries on, across days, without mailing anyone twice.

The send run's clock is injected (a `FakeClock`, or `dispatch --now`), so days
pass without anyone waiting; the ledger is a real SQLite file and the
`dispatch` tests deliver through a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.audience.lists import Recipient, Variant
from newsletter.cli import cli
from newsletter.content.issue import Issue
from newsletter.core.project import Project, open_project
from newsletter.core.settings import RateSettings
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.ledger.deliveries import Ledger, NewRecipient, Outcome
from newsletter.transports.base import OutgoingMessage
from tests.support.clock import FakeClock
from tests.support.memory_transport import MemoryTransport
from tests.support.project import ISSUE, edit_issue, set_per_day, speed_up
from tests.support.smtp import SmtpTestServer

DAY = 24 * 3600
# Monday 15 May 2023, 09:00 in London (08:00 UTC): the sample issue's send_at.
MONDAY_9AM = datetime(2023, 5, 15, 8, 0, tzinfo=UTC).timestamp()
READERS = [f"reader{n:02d}@example.org" for n in range(1, 13)]


def twelve_readers(project_dir: Path) -> None:
    """Replace the sample lists with one list of 12 people (the other lists left empty)."""
    lists = project_dir / "recipients" / "lists"
    header = ["email", "name", "organisation", "agency", "role", "district"]
    for path in lists.glob("*.csv"):
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            if path.stem == "comms":
                for n, address in enumerate(READERS, 1):
                    writer.writerow(
                        [address, f"Reader {n}", "Example Trust", "health", "nurse", "North"]
                    )
    (project_dir / "recipients" / "suppressed.csv").write_text(
        "email,reason,date\n", encoding="utf-8"
    )


def capped(project: Project, per_day: int) -> Project:
    rate = RateSettings(per_second=None, per_day=per_day)
    return Project(project.root_dir, replace(project.settings, rate=rate))


def factory(sent: list[OutgoingMessage]):  # type: ignore[no-untyped-def]
    return lambda: MemoryTransport(sent=sent)


@pytest.fixture
def twelve(project_dir: Path) -> Project:
    twelve_readers(project_dir)
    return open_project(project_dir)


@pytest.fixture
def issue(twelve: Project) -> Issue:
    return twelve.load_issue(ISSUE)


def test_a_cap_of_five_carries_twelve_people_over_three_days(twelve: Project, issue: Issue) -> None:
    project = capped(twelve, 5)
    clock = FakeClock(MONDAY_9AM)
    sent: list[OutgoingMessage] = []

    def run() -> tuple[int, float | None]:
        result = send_issue(project, issue, transport_factory=factory(sent), clock=clock)
        reopens = result.daily_cap.reopens_at if result.daily_cap else None
        return result.sent, reopens

    assert run() == (5, MONDAY_9AM + DAY)  # Monday: five, then the cap
    clock.advance(3 * 3600)
    assert run() == (0, MONDAY_9AM + DAY)  # later on Monday: nobody, same answer
    clock.now = MONDAY_9AM + DAY  # exactly 24 hours after the first five
    assert run() == (5, MONDAY_9AM + 2 * DAY)  # Tuesday
    clock.now = MONDAY_9AM + 2 * DAY + 60
    final = send_issue(project, issue, transport_factory=factory(sent), clock=clock)
    assert (final.sent, final.daily_cap, final.ok) == (2, None, True)  # Wednesday: done

    assert sorted(m.recipient for m in sent) == READERS  # everyone once, nobody twice
    with Ledger(project.settings.ledger_path) as ledger:
        assert ledger.summary(ISSUE).complete
        assert ledger.count_states(ISSUE)["sent"] == 12


def test_the_cap_is_a_rolling_24_hours_not_a_calendar_day(twelve: Project, issue: Issue) -> None:
    project = capped(twelve, 5)
    late_evening = datetime(2023, 5, 15, 22, 30, tzinfo=UTC).timestamp()
    clock = FakeClock(late_evening)
    sent: list[OutgoingMessage] = []
    assert send_issue(project, issue, transport_factory=factory(sent), clock=clock).sent == 5

    clock.now = late_evening + 2 * 3600  # past midnight: a new calendar day, same 24 hours
    again = send_issue(project, issue, transport_factory=factory(sent), clock=clock)
    assert again.sent == 0 and again.daily_cap is not None
    assert again.daily_cap.sent == 5 and again.daily_cap.reopens_at == late_evening + DAY


def test_sends_of_every_issue_in_the_ledger_count_towards_the_cap(
    twelve: Project, issue: Issue
) -> None:
    project = capped(twelve, 5)
    clock = FakeClock(MONDAY_9AM)
    # An earlier issue went to three people an hour ago (the same mailbox's 24 hours).
    with Ledger(project.settings.ledger_path) as ledger:
        people = [Recipient(f"earlier{n}@example.org", "") for n in range(3)]
        ledger.add_recipients(
            "2023-02-earlier", [NewRecipient(p, Variant("all", ("a",), "All")) for p in people]
        )
        rows = ledger.claim("2023-02-earlier", "old-run", 10, now=0, max_run_attempts=1)
        ledger.record(
            "2023-02-earlier",
            [(Outcome(r.address_key, "sent"), None) for r in rows],
            now=MONDAY_9AM - 3600,
        )
    sent: list[OutgoingMessage] = []

    result = send_issue(project, issue, transport_factory=factory(sent), clock=clock)

    assert result.sent == 2  # 5 a day, 3 already gone
    assert result.daily_cap is not None
    assert result.daily_cap.reopens_at == MONDAY_9AM - 3600 + DAY  # when those three age out
    clock.now = MONDAY_9AM - 3600 + DAY
    assert send_issue(project, issue, transport_factory=factory(sent), clock=clock).sent == 3


def test_temporary_failures_do_not_use_up_the_days_allowance(twelve: Project, issue: Issue) -> None:
    project = capped(twelve, 5)
    clock = FakeClock(MONDAY_9AM)
    sent: list[OutgoingMessage] = []
    flaky = {READERS[0]: ["failed-temporary"], READERS[1]: ["failed-temporary"]}
    shared = MemoryTransport(failures=flaky, sent=sent)  # type: ignore[arg-type]

    result = send_issue(
        project, issue, SendOptions(), transport_factory=lambda: shared, clock=clock
    )

    # The two that failed did not count: five others really went, and the two wait for
    # the next run (a retry now would go over the cap).
    assert result.sent == 5 and result.failed_temporary == 2
    assert sorted(m.recipient for m in sent) == READERS[2:7]
    assert result.daily_cap is not None


def test_per_day_0_or_left_out_means_no_cap(twelve: Project, issue: Issue) -> None:
    set_per_day(twelve.root_dir, 0)
    project = open_project(twelve.root_dir)
    assert project.settings.rate.per_day is None
    sent: list[OutgoingMessage] = []
    result = send_issue(project, issue, transport_factory=factory(sent), clock=FakeClock())
    assert (result.sent, result.daily_cap) == (12, None)


# --- through the commands ----------------------------------------------------


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


@pytest.fixture
def cron_project(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    smtp_server.configure(monkeypatch)
    speed_up(project_dir)
    twelve_readers(project_dir)
    set_per_day(project_dir, 5)
    edit_issue(project_dir, approved=True)  # send_at Monday 15 May 2023, 09:00 in London
    return project_dir


def test_dispatch_stops_at_the_cap_and_the_next_days_ticks_carry_on(
    cron_project: Path, smtp_server: SmtpTestServer
) -> None:
    monday = run(cron_project, "dispatch", "--now", "2023-05-15T09:00:00+01:00")
    assert monday.exit_code == 0, monday.output  # a cap is not a failure
    assert "5 sent" in monday.output
    assert "daily cap reached" in monday.output
    assert "continue after 09:00 tomorrow" in monday.output
    assert len(smtp_server.recipients()) == 5

    schedule = run(cron_project, "schedule", "--now", "2023-05-15T13:00:00+01:00")
    assert schedule.exit_code == 0, schedule.output
    assert "sending: 5 of 12, continues after 09:00 tomorrow" in schedule.output

    later = run(cron_project, "dispatch", "--now", "2023-05-15T17:00:00+01:00")
    assert later.exit_code == 0, later.output
    assert "daily cap reached" in later.output
    assert len(smtp_server.recipients()) == 5  # nobody more on Monday

    tuesday = run(cron_project, "dispatch", "--now", "2023-05-16T09:00:30+01:00")
    assert tuesday.exit_code == 0, tuesday.output
    assert len(smtp_server.recipients()) == 10
    wednesday = run(cron_project, "dispatch", "--now", "2023-05-17T09:05:00+01:00")
    assert wednesday.exit_code == 0, wednesday.output
    assert f"{ISSUE}: finished: 2 sent" in wednesday.output
    done = run(cron_project, "dispatch", "--now", "2023-05-18T09:05:00+01:00")
    assert "nothing to send" in done.output

    delivered = Counter(address.lower() for address in smtp_server.recipients())
    assert sorted(delivered) == READERS and set(delivered.values()) == {1}
    log = [
        json.loads(line)
        for line in (cron_project / "var" / "dispatch.log").read_text("utf-8").splitlines()
    ]
    assert [entry["action"] for entry in log] == ["incomplete", "incomplete", "incomplete", "sent"]
    assert all("daily cap reached" in entry["message"] for entry in log[:3])


def test_send_stops_at_the_cap_with_exit_0_and_says_when_it_can_go_on(
    cron_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(cron_project, "send", ISSUE, "--send", "--yes")

    assert result.exit_code == 0, result.output
    assert "Sent 5;" in result.stdout
    assert "Daily cap reached: 5 sent in the last 24 hours (rate.per_day 5)" in result.stderr
    assert "Run the same command again then" in result.stderr
    assert len(smtp_server.recipients()) == 5

    as_json = run(cron_project, "send", ISSUE, "--send", "--yes", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["sent"] == 0
    assert data["daily_cap"]["per_day"] == 5 and data["daily_cap"]["sent_in_24_hours"] == 5
    assert len(smtp_server.recipients()) == 5
