"""Sending over a real ledger file (send, retry, plan, test copies, report), with the in-memory transport and a fake clock."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from newsletter.audience.lists import read_suppressed
from newsletter.audience.suppression import add_suppression
from newsletter.content.issue import Issue
from newsletter.core.errors import DeliveryError, NewsletterError
from newsletter.core.project import Project
from newsletter.core.ratelimit import RateLimiter, backoff_delay
from newsletter.core.settings import RateSettings, RetrySettings
from newsletter.delivery.plan import plan_send
from newsletter.delivery.proofs import send_test_copies
from newsletter.delivery.report import delivery_report
from newsletter.delivery.send import (
    SendOptions,
    SendProgress,
    resend_unknown,
    retry_issue,
    send_issue,
)
from newsletter.ledger.deliveries import Ledger
from newsletter.transports.base import DeliveryResult, OutgoingMessage
from tests.support.memory_transport import MemoryTransport

ISSUE = "2023-05-panel-reports"
BRUISING = "Bruising in non-mobile infants"


class FakeClock:
    """Time moves only when someone sleeps; every sleep is remembered."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def with_settings(project: Project, **changes: object) -> Project:
    return Project(project.root_dir, replace(project.settings, **changes))


def memory(sent: list[OutgoingMessage], failures: dict[str, list[str]] | None = None):  # type: ignore[no-untyped-def]
    shared = MemoryTransport(failures=failures, sent=sent)  # type: ignore[arg-type]
    opened: list[MemoryTransport] = []

    def factory() -> MemoryTransport:
        # One instance per worker, as open_transport gives, sharing the record of what was sent.
        transport = MemoryTransport(sent=sent)
        transport._failures = shared._failures  # the same planned failures for every worker
        transport._lock = shared._lock
        opened.append(transport)
        return transport

    factory.opened = opened  # type: ignore[attr-defined]
    return factory


def dead_pid() -> int:
    """The pid of a process that has already exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def body(message: OutgoingMessage) -> str:
    part = message.message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def issue(project: Project) -> Issue:
    return project.load_issue(ISSUE)


def test_everyone_gets_exactly_one_message_with_their_variant(
    project: Project, issue: Issue
) -> None:
    sent: list[OutgoingMessage] = []
    result = send_issue(
        project, issue, SendOptions(rate=0), transport_factory=memory(sent), clock=FakeClock()
    )
    assert (result.sent, result.failed_permanent, result.failed_temporary) == (67, 0, 0)
    assert result.suppressed == 4 and result.ok
    recipients = Counter(m.recipient.lower() for m in sent)
    assert len(recipients) == 67 and set(recipients.values()) == {1}
    with Ledger(project.settings.ledger_path) as ledger:
        rows = {row.address_key: row for row in ledger.rows(ISSUE)}
        assert ledger.summary(ISSUE).complete
    for message in sent:
        row = rows[message.recipient.lower()]
        assert row.state == "sent"
        assert row.message_id == message.message_id == message.message["Message-ID"]
        gets_bruising = row.agency in ("health", "childrens-social-care", "police", "education")
        assert (BRUISING in body(message)) == gets_bruising, row.email
        assert row.variant_key == (
            "all-sections" if gets_bruising else "without-bruising-in-non-mobile-infants"
        )


def test_a_second_run_sends_nothing(project: Project, issue: Issue) -> None:
    sent: list[OutgoingMessage] = []
    send_issue(project, issue, SendOptions(rate=0), transport_factory=memory(sent))
    again = send_issue(project, issue, SendOptions(rate=0), transport_factory=memory(sent))
    assert again.sent == 0 and again.skipped_already_sent == 67
    assert len(sent) == 67


def test_temporary_failure_is_retried_with_backoff_then_delivered(
    project: Project, issue: Issue
) -> None:
    clock = FakeClock()
    sent: list[OutgoingMessage] = []
    victim = "j.okafor@example.org"
    factory = memory(sent, {victim: ["failed-temporary", "failed-temporary"]})
    result = send_issue(
        project,
        issue,
        SendOptions(rate=0),
        transport_factory=factory,
        clock=clock,
        rng=random.Random(1),
    )
    assert result.sent == 67 and result.ok
    assert [m.recipient.lower() for m in sent].count(victim) == 1
    # Two waits, the second about twice the first (base 2 s, with jitter between half and all of it).
    assert len(clock.sleeps) == 2
    assert 1.0 <= clock.sleeps[0] <= 2.0 and 2.0 <= clock.sleeps[1] <= 4.0
    with Ledger(project.settings.ledger_path) as ledger:
        row = ledger.lookup(ISSUE, victim)
    assert row is not None and (row.state, row.attempts) == ("sent", 3)


def test_temporary_failures_stop_at_max_attempts_and_retry_sends_them_later(
    project: Project, issue: Issue
) -> None:
    project = with_settings(project, retry=RetrySettings(max_attempts=3, base_delay_seconds=1))
    sent: list[OutgoingMessage] = []
    victim = "j.okafor@example.org"
    factory = memory(sent, {victim: ["failed-temporary"] * 3})
    result = send_issue(
        project, issue, SendOptions(rate=0), transport_factory=factory, clock=FakeClock()
    )
    assert result.sent == 66 and result.failed_temporary == 1 and not result.ok
    assert [f.email.lower() for f in result.failures] == [victim]
    with Ledger(project.settings.ledger_path) as ledger:
        row = ledger.lookup(ISSUE, victim)
        assert row is not None and (row.state, row.attempts) == ("failed-temporary", 3)
        assert not ledger.summary(ISSUE).complete
    later = retry_issue(
        project, issue, SendOptions(rate=0), transport_factory=factory, clock=FakeClock()
    )
    assert later.sent == 1 and later.ok
    assert len(sent) == 67


def test_retry_leaves_out_someone_who_unsubscribed_since_the_first_run(
    project: Project, issue: Issue
) -> None:
    """`retry` does not re-read the lists, but the suppression list is checked at hand-over."""
    project = with_settings(project, retry=RetrySettings(max_attempts=1, base_delay_seconds=1))
    sent: list[OutgoingMessage] = []
    leaving = "j.okafor@example.org"
    factory = memory(sent, {leaving: ["failed-temporary"]})
    first = send_issue(
        project, issue, SendOptions(rate=0), transport_factory=factory, clock=FakeClock()
    )
    assert first.failed_temporary == 1
    add_suppression(project.paths.suppressed_path, leaving, "unsubscribed", "2023-05-16")

    later = retry_issue(
        project, issue, SendOptions(rate=0), transport_factory=factory, clock=FakeClock()
    )

    assert later.sent == 0 and later.suppressed == first.suppressed + 1 and later.ok
    assert leaving not in {m.recipient.lower() for m in sent}
    with Ledger(project.settings.ledger_path) as ledger:
        row = ledger.lookup(ISSUE, leaving)
        assert row is not None and row.state == "suppressed"
        assert row.last_error == "suppressed: unsubscribed (while this issue was being sent)"
        assert ledger.summary(ISSUE).complete


def test_retry_after_from_the_provider_is_honoured(project: Project, issue: Issue) -> None:
    class SlowDown(MemoryTransport):
        calls = 0

        def send_batch(self, messages):  # type: ignore[no-untyped-def]
            SlowDown.calls += 1
            if SlowDown.calls == 1:
                return [
                    DeliveryResult(
                        m.recipient, m.message_id, "failed-temporary", "429", retry_after=90
                    )
                    for m in messages
                ]
            return super().send_batch(messages)

    clock = FakeClock()
    sent: list[OutgoingMessage] = []
    result = send_issue(
        project,
        issue,
        SendOptions(rate=0),
        transport_factory=lambda: SlowDown(sent=sent),
        clock=clock,
    )
    assert result.sent == 67
    assert clock.sleeps and max(clock.sleeps) >= 90


def test_permanent_failure_is_not_retried_and_the_address_is_suppressed(
    project: Project, issue: Issue
) -> None:
    sent: list[OutgoingMessage] = []
    victim = "j.okafor@example.org"
    result = send_issue(
        project,
        issue,
        SendOptions(rate=0),
        transport_factory=memory(sent, {victim: ["failed-permanent"]}),
    )
    assert (result.sent, result.failed_permanent) == (66, 1) and not result.ok
    assert result.hard_bounced == ("j.okafor@example.org",)
    assert result.failures[0].detail.startswith("550")
    with Ledger(project.settings.ledger_path) as ledger:
        row = ledger.lookup(ISSUE, victim)
    assert row is not None and (row.state, row.attempts) == ("failed-permanent", 1)
    suppressed, _ = read_suppressed(project.paths.suppressed_path)
    assert suppressed[victim].reason == "hard-bounce"
    # The next issue's audience leaves them out.
    assert plan_send(project, issue).suppressed == 5


def test_hard_bounce_needs_the_configured_number_of_failures(
    project: Project, issue: Issue
) -> None:
    project = with_settings(project, retry=RetrySettings(hard_bounce_after=2))
    victim = "j.okafor@example.org"
    result = send_issue(
        project,
        issue,
        SendOptions(rate=0),
        transport_factory=memory([], {victim: ["failed-permanent"]}),
    )
    assert result.failed_permanent == 1 and result.hard_bounced == ()
    suppressed, _ = read_suppressed(project.paths.suppressed_path)
    assert victim not in suppressed


def test_limit_sends_part_and_a_later_run_sends_the_rest(project: Project, issue: Issue) -> None:
    sent: list[OutgoingMessage] = []
    first = send_issue(
        project, issue, SendOptions(rate=0, limit=10), transport_factory=memory(sent)
    )
    assert first.sent == 10
    with Ledger(project.settings.ledger_path) as ledger:
        assert ledger.count_states(ISSUE)["pending"] == 57
        assert not ledger.summary(ISSUE).complete
    second = send_issue(project, issue, SendOptions(rate=0), transport_factory=memory(sent))
    assert second.sent == 57 and second.skipped_already_sent == 10
    assert len({m.recipient for m in sent}) == 67 == len(sent)


def test_concurrent_workers_each_have_their_own_transport(project: Project, issue: Issue) -> None:
    sent: list[OutgoingMessage] = []
    factory = memory(sent)
    result = send_issue(
        project, issue, SendOptions(rate=0, concurrency=4), transport_factory=factory
    )
    assert result.sent == 67 and len(sent) == 67
    opened = factory.opened  # type: ignore[attr-defined]
    assert len(opened) == 4 and all(t.closed for t in opened)


def test_a_broken_transport_stops_the_run_and_leaves_nobody_claimed(
    project: Project, issue: Issue
) -> None:
    class Broken(MemoryTransport):
        def send_batch(self, messages):  # type: ignore[no-untyped-def]
            raise DeliveryError("the SMTP server refused the login for the configured user")

    with pytest.raises(DeliveryError, match="refused the login"):
        send_issue(project, issue, SendOptions(rate=0, concurrency=2), transport_factory=Broken)
    with Ledger(project.settings.ledger_path) as ledger:
        counts = ledger.count_states(ISSUE)
        assert counts["sending"] == 0 and counts["sent"] == 0 and counts["pending"] == 67
        assert all(r.attempts == 0 for r in ledger.rows(ISSUE, ("pending",)))
    sent: list[OutgoingMessage] = []
    assert (
        send_issue(project, issue, SendOptions(rate=0), transport_factory=memory(sent)).sent == 67
    )


def test_rows_left_sending_by_a_killed_run_are_resent_with_the_same_message_id(
    project: Project, issue: Issue
) -> None:
    sent: list[OutgoingMessage] = []
    send_issue(project, issue, SendOptions(rate=0, limit=20), transport_factory=memory(sent))
    first_ids = {m.recipient.lower(): m.message_id for m in sent}
    # Pretend a run that has since died claimed five more rows and sent them.
    path = project.settings.ledger_path
    with Ledger(path) as ledger:
        ledger.pid = dead_pid()
        claimed = ledger.claim(ISSUE, "dead-run", 5, now=0, max_run_attempts=5)
        ledger.hand_over(ISSUE, [row.address_key for row in claimed])
    sent_before = len(sent)
    result = send_issue(project, issue, SendOptions(rate=0), transport_factory=memory(sent))
    assert result.recovered == 5 and result.sent == 47
    resent = {m.recipient.lower(): m.message_id for m in sent[sent_before:]}
    for row in claimed:
        assert resent[row.address_key] == row.message_id
    assert not set(first_ids) & set(resent)
    conn = sqlite3.connect(path)
    states = Counter(s for (s,) in conn.execute("SELECT state FROM deliveries"))
    conn.close()
    assert states == {"sent": 67, "suppressed": 4}


def test_progress_is_reported_up_to_the_total(project: Project, issue: Issue) -> None:
    seen: list[SendProgress] = []
    send_issue(
        project, issue, SendOptions(rate=0), transport_factory=memory([]), progress=seen.append
    )
    assert seen[-1] == SendProgress(done=67, total=67, sent=67, failed=0)
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_rate_limit_from_settings_spaces_the_messages(project: Project, issue: Issue) -> None:
    project = with_settings(project, rate=RateSettings(per_second=None, per_minute=30))
    clock = FakeClock()
    start = clock.now
    send_issue(project, issue, transport_factory=memory([]), clock=clock)
    # 67 messages at 30 a minute: the last goes out after two full minutes.
    assert clock.now - start >= 120


def test_rate_limiter_caps_per_second_and_per_hour() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=10)
    start = clock.now
    for _ in range(30):
        limiter.acquire()
    assert 1.9 <= clock.now - start <= 2.1
    hourly = RateLimiter(clock, per_hour=5)
    start = clock.now
    for _ in range(6):
        hourly.acquire()
    assert clock.now - start == pytest.approx(3600)
    assert RateLimiter(clock).unlimited and RateLimiter(clock).describe() == "no limit"


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 2.0, 30.0, rng) for n in range(1, 7)]
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 4 and 4 <= delays[2] <= 8
    assert all(15 <= d <= 30 for d in delays[4:])


def test_plan_writes_nothing(project: Project, issue: Issue) -> None:
    plan = plan_send(project, issue, SendOptions(transport="smtp", rate=0))
    assert not project.settings.ledger_path.exists()
    assert not project.settings.ledger_path.parent.exists()
    assert plan.recipients == 67 and plan.suppressed == 4 and plan.duplicates_merged == 11
    assert {v.key: v.recipients for v in plan.variants} == {
        "all-sections": 44,
        "without-bruising-in-non-mobile-infants": 23,
    }
    assert plan.transport == "smtp" and plan.concurrency == 2 and plan.rate == "no limit"


def test_test_copies_go_to_one_address_and_touch_no_ledger(project: Project, issue: Issue) -> None:
    sent: list[OutgoingMessage] = []
    results = send_test_copies(project, issue, "me@example.org", transport_factory=memory(sent))
    assert [c.variant.key for c in results] == [
        "all-sections",
        "without-bruising-in-non-mobile-infants",
    ]
    assert all(c.result.ok for c in results)
    assert {m.recipient for m in sent} == {"me@example.org"}
    assert all(str(m.message["Subject"]).startswith("[TEST: ") for m in sent)
    assert [BRUISING in body(m) for m in sent] == [True, False]
    assert not project.settings.ledger_path.exists()


def test_report_counts_states_segments_and_failures(project: Project, issue: Issue) -> None:
    victim = "j.okafor@example.org"
    send_issue(
        project,
        issue,
        SendOptions(rate=0, message_date=datetime(2023, 5, 30, 9, tzinfo=UTC)),
        transport_factory=memory([], {victim: ["failed-permanent"]}),
    )
    report = delivery_report(project, ISSUE)
    assert report.summary.counts["sent"] == 66 and report.summary.counts["failed-permanent"] == 1
    assert report.summary.counts["suppressed"] == 4
    assert report.per_segment["all-practitioners"]["sent"] == 66
    assert [(f.email.lower(), f.state) for f in report.failures] == [(victim, "failed-permanent")]
    assert report.as_dict()["failures"][0]["detail"].startswith("550")


# --- refusals in a row, attempts across runs -----------------------------------------


def audience_order(project: Project, issue: Issue) -> list[str]:
    """The sample audience's addresses in the order they are added to the ledger (and sent)."""
    from newsletter.audience.lists import iter_audience

    return [r.key for r, _ in iter_audience(project.audience_source(), issue)]


def test_identical_refusals_in_a_row_stop_the_run_and_suppress_nobody(
    project: Project, issue: Issue
) -> None:
    streak = audience_order(project, issue)[10:16]  # six people in a row
    sent: list[OutgoingMessage] = []
    factory = memory(sent, {address: ["failed-permanent"] for address in streak})
    suppressed_before = project.paths.suppressed_path.read_text()

    with pytest.raises(NewsletterError, match="5 recipients in a row were refused") as caught:
        send_issue(project, issue, SendOptions(rate=0, concurrency=1), transport_factory=factory)

    assert "550 no such user" in str(caught.value) and "newsletter unsubscribe" in str(caught.value)
    assert project.paths.suppressed_path.read_text() == suppressed_before
    with Ledger(project.settings.ledger_path) as ledger:
        counts = ledger.count_states(ISSUE)
        assert counts["failed-permanent"] == 0 and counts["sending"] == 0
        assert {ledger.lookup(ISSUE, a).state for a in streak[:5]} == {"pending"}  # type: ignore[union-attr]
    assert len(sent) == counts["sent"] == 10  # stopped there: nobody after the streak


def test_a_short_streak_is_recorded_as_the_individual_refusals_it_was(
    project: Project, issue: Issue
) -> None:
    streak = audience_order(project, issue)[10:14]  # four: under the breaker's five
    sent: list[OutgoingMessage] = []
    factory = memory(sent, {address: ["failed-permanent"] for address in streak})

    result = send_issue(
        project, issue, SendOptions(rate=0, concurrency=1), transport_factory=factory
    )

    assert (result.sent, result.failed_permanent) == (63, 4)
    assert sorted(result.hard_bounced) == sorted(streak)
    suppressed, _ = read_suppressed(project.paths.suppressed_path)
    assert all(suppressed[a].reason == "hard-bounce" for a in streak)


def test_a_streak_at_the_very_end_is_recorded_when_the_run_ends(
    project: Project, issue: Issue
) -> None:
    last_two = audience_order(project, issue)[-2:]
    result = send_issue(
        project,
        issue,
        SendOptions(rate=0, concurrency=1),
        transport_factory=memory([], {a: ["failed-permanent"] for a in last_two}),
    )
    assert result.failed_permanent == 2
    with Ledger(project.settings.ledger_path) as ledger:
        assert ledger.count_states(ISSUE)["failed-permanent"] == 2
        assert ledger.summary(ISSUE).complete


def test_attempts_add_up_across_runs_and_then_no_automatic_run_tries_again(
    project: Project, issue: Issue
) -> None:
    retry = RetrySettings(max_attempts=2, base_delay_seconds=1, max_total_attempts=5)
    project = with_settings(project, retry=retry)
    victim = "j.okafor@example.org"
    sent: list[OutgoingMessage] = []
    factory = memory(sent, {victim: ["failed-temporary"] * 100})

    runs = [
        send_issue(
            project, issue, SendOptions(rate=0), transport_factory=factory, clock=FakeClock()
        )
        for _ in range(4)
    ]

    assert [r.failed_temporary for r in runs] == [1, 1, 0, 0]
    assert [r.gave_up for r in runs] == [0, 0, 1, 0]
    with Ledger(project.settings.ledger_path) as ledger:
        row = ledger.lookup(ISSUE, victim)
        assert row is not None and (row.state, row.attempts) == ("gave-up", 5)
        assert ledger.summary(ISSUE).complete  # dispatch leaves the issue alone now
    # `retry`, asked for by the team, tries once more.
    later = retry_issue(project, issue, SendOptions(rate=0), transport_factory=memory(sent))
    assert later.sent == 1 and len(sent) == 67


def test_an_unknown_outcome_is_recorded_and_left_for_retry_unknown(
    project: Project, issue: Issue
) -> None:
    victim = "j.okafor@example.org"
    sent: list[OutgoingMessage] = []
    first = send_issue(
        project, issue, SendOptions(rate=0), transport_factory=memory(sent, {victim: ["unknown"]})
    )
    assert (first.sent, first.unknown, first.unknown_in_ledger) == (66, 1, 1) and not first.ok
    assert first.failures[0].state == "unknown"
    for again in (send_issue, retry_issue):
        assert again(project, issue, SendOptions(rate=0), transport_factory=memory(sent)).sent == 0
    resent = resend_unknown(project, issue, SendOptions(rate=0), transport_factory=memory(sent))
    assert resent.sent == 1 and resent.unknown_in_ledger == 0 and resent.ok
    assert [m.recipient.lower() for m in sent].count(victim) == 1  # the memory relay kept none


def test_four_smtp_connections_send_from_processes_and_their_counts_add_up(
    project_dir, smtp_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a rate limit, each SMTP connection sends from its own process (more cores);
    what each recorded reaches the summary, the progress and the suppression list."""
    import newsletter.delivery.workers as send_module
    from newsletter.core.project import open_project
    from tests.support.project import edit_issue, speed_up

    forked: list[str] = []
    start_process = send_module.start_process

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        forked.append(kwargs["name"])
        return start_process(*args, **kwargs)

    monkeypatch.setattr(send_module, "start_process", counted)
    smtp_server.configure(monkeypatch)
    speed_up(project_dir)
    edit_issue(project_dir, approved=True)
    victim = "j.okafor@example.org"
    smtp_server.fail(victim, 550)
    project = open_project(project_dir)
    progress: list[SendProgress] = []

    result = send_issue(
        project,
        project.load_issue(ISSUE),
        SendOptions(concurrency=4),
        progress=progress.append,
    )

    assert len(forked) == 4
    assert (result.sent, result.failed_permanent) == (66, 1)
    assert result.hard_bounced == (victim,)
    assert [f.email for f in result.failures] == [victim]
    assert progress[-1].done == progress[-1].total == 67
    received = smtp_server.by_recipient()
    assert len(received) == 66 and {len(c) for c in received.values()} == {1}
    suppressed, _ = read_suppressed(project.paths.suppressed_path)
    assert suppressed[victim].reason == "hard-bounce"


def test_a_relay_refusing_the_message_itself_stops_sending_processes_and_fails_nobody(
    project_dir, smtp_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error raised in a sending process reaches the person, as it does from a thread."""
    from newsletter.core.project import open_project
    from tests.support.project import edit_issue, speed_up

    smtp_server.configure(monkeypatch)
    speed_up(project_dir)
    edit_issue(project_dir, approved=True)
    smtp_server.fail("*", 554, stage="DATA", text="5.7.1 Message rejected as spam")
    project = open_project(project_dir)
    suppressed_before, _ = read_suppressed(project.paths.suppressed_path)

    with pytest.raises(DeliveryError, match="refused the message itself") as raised:
        send_issue(project, project.load_issue(ISSUE), SendOptions(concurrency=2))

    assert "5.7.1 Message rejected as spam" in str(raised.value)
    with Ledger(project.settings.ledger_path) as ledger:
        states = ledger.count_states(ISSUE)
    assert states["failed-permanent"] == 0 and states["sending"] == 0
    suppressed_after, _ = read_suppressed(project.paths.suppressed_path)
    assert suppressed_after.keys() == suppressed_before.keys()  # nobody suppressed for it
