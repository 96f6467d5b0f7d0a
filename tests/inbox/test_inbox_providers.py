"""`newsletter inbox --provider`: Postmark's and Mailjet's bounce APIs and GOV.UK Notify's
permanent failures, against local fakes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.inbox.run import ledger_events
from tests.inbox.sent import our_message_id
from tests.support.bounce_apis import FakeMailjetMessages, FakePostmarkBounces
from tests.support.notify import TEMPLATE_ID, FakeNotify
from tests.support.project import speed_up
from tests.support.providers import MAILJET_SECRET, POSTMARK_TOKEN

ISSUE = "2023-05-panel-reports"


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), "inbox", *args])


def suppressed(project_dir: Path) -> set[tuple[str, str]]:
    with (project_dir / "recipients" / "suppressed.csv").open(encoding="utf-8") as handle:
        return {(r["email"], r["reason"]) for r in csv.DictReader(handle)}


def test_postmark_bounces_are_read_and_acted_on_once(
    project_dir: Path, postmark_bounces: FakePostmarkBounces, monkeypatch: pytest.MonkeyPatch
) -> None:
    postmark_bounces.configure(monkeypatch)
    postmark_bounces.add("gone@example.com", "HardBounce", "smtp;550 5.1.1 User unknown")
    postmark_bounces.add("typo@example", "BadEmailAddress", "Invalid address")
    postmark_bounces.add("annoyed@example.com", "SpamComplaint")
    postmark_bounces.add("busy@example.com", "SoftBounce", "mailbox full")
    postmark_bounces.add("away@example.com", "AutoResponder")
    postmark_bounces.add("blocked@example.com", "Blocked", "ISP block")

    first = run(project_dir, "--provider", "postmark")

    assert first.exit_code == 0, first.output
    added = suppressed(project_dir)
    assert {("gone@example.com", "hard-bounce"), ("annoyed@example.com", "complaint")} <= added
    assert not {a for a, _ in added} & {
        "busy@example.com",
        "away@example.com",
        "blocked@example.com",
        "typo@example",  # not an address: never written, so the list stays valid
    }
    assert "hard bounces: 2 (1 added" in first.output
    assert "not valid email addresses, never added: 1" in first.output
    assert "`typo@example` is not a valid email address" in first.output
    validate = CliRunner().invoke(cli, ["--root", str(project_dir), "validate"])
    assert "suppressed.csv" not in validate.output
    assert "not recognised, left in place: 1" in first.output
    assert "a Postmark bounce of type Blocked: ISP block" in first.output
    [request] = postmark_bounces.requests
    assert request.path == "/bounces?count=500&offset=0"
    assert request.headers["X-Postmark-Server-Token"] == POSTMARK_TOKEN
    events = ledger_events(open_project(project_dir).settings.ledger_path)
    assert {e["key"] for e in events} >= {"postmark:692560000", "postmark:692560002"}

    # Again: the first page holds nothing new, so paging stops and nothing changes.
    before = (project_dir / "recipients" / "suppressed.csv").read_bytes()
    second = run(project_dir, "--provider", "postmark")
    assert "already processed: 5 (skipped)" in second.output
    assert (project_dir / "recipients" / "suppressed.csv").read_bytes() == before
    assert len(postmark_bounces.requests) == 2


def test_postmark_is_paged_within_its_limits_and_stops_at_known_bounces(
    project_dir: Path, postmark_bounces: FakePostmarkBounces, monkeypatch: pytest.MonkeyPatch
) -> None:
    postmark_bounces.configure(monkeypatch)
    # Three pages' worth, newest first: one hard bounce on each page, soft bounces
    # around them (few hard bounces: before polls were applied in batches, each one
    # rewrote suppressed.csv, and 1,203 of them took 10 s).
    hard = {1202: "page1", 600: "page2", 0: "page3"}
    for n in range(1203):
        if n in hard:
            postmark_bounces.add(f"gone-{hard[n]}@example.com", "HardBounce")
        else:
            postmark_bounces.add(f"busy{n}@example.com", "SoftBounce")

    result = run(project_dir, "--provider", "postmark", "--format", "json")

    assert result.exit_code == 0, result.output
    assert [r.path for r in postmark_bounces.requests] == [
        "/bounces?count=500&offset=0",
        "/bounces?count=500&offset=500",
        "/bounces?count=500&offset=1000",
    ]
    gone = {f"gone-{page}@example.com" for page in hard.values()}
    assert gone <= {email for email, reason in suppressed(project_dir) if reason == "hard-bounce"}
    postmark_bounces.add("new@example.com", "HardBounce")
    again = run(project_dir, "--provider", "postmark")
    assert "hard bounces: 1 (1 added" in again.output
    # The first page held a new bounce, so the next was read too; it held none, so paging stopped.
    assert [r.path for r in postmark_bounces.requests[3:]] == [
        "/bounces?count=500&offset=0",
        "/bounces?count=500&offset=500",
    ]


def test_postmark_rate_limit_is_retried_and_a_wrong_token_is_named(
    project_dir: Path, postmark_bounces: FakePostmarkBounces, monkeypatch: pytest.MonkeyPatch
) -> None:
    postmark_bounces.configure(monkeypatch)
    postmark_bounces.add("gone@example.com", "HardBounce")
    postmark_bounces.respond(429, headers={"Retry-After": "0"})
    assert "hard bounces: 1 (1 added" in run(project_dir, "--provider", "postmark").output
    assert len(postmark_bounces.requests) == 2

    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", "wrong-token-123456")
    refused = run(project_dir, "--provider", "postmark")
    assert refused.exit_code == 1
    assert "Postmark refused our credentials" in refused.output
    assert "NEWSLETTER_POSTMARK_TOKEN" in refused.output
    assert "wrong-token-123456" not in refused.output


def test_a_dry_run_against_postmark_changes_nothing(
    project_dir: Path, postmark_bounces: FakePostmarkBounces, monkeypatch: pytest.MonkeyPatch
) -> None:
    postmark_bounces.configure(monkeypatch)
    postmark_bounces.add("gone@example.com", "HardBounce")
    before = (project_dir / "recipients" / "suppressed.csv").read_bytes()
    dry = run(project_dir, "--provider", "postmark", "--dry-run")
    assert "hard bounces: 1 (1 would be added" in dry.output
    assert (project_dir / "recipients" / "suppressed.csv").read_bytes() == before
    assert not open_project(project_dir).settings.ledger_path.exists()


def test_mailjet_hard_bounces_and_spam_reports_are_suppressed_and_matched_to_the_issue(
    project_dir: Path, mailjet_messages: FakeMailjetMessages, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailjet_messages.configure(monkeypatch)
    custom_id = our_message_id("gone@example.com").strip("<>")
    mailjet_messages.add("gone@example.com", 10, custom_id)
    mailjet_messages.add("annoyed@example.com", 6)
    mailjet_messages.add("full@example.com", 9)
    mailjet_messages.add("happy@example.com", 3)  # opened: never asked for

    first = run(project_dir, "--provider", "mailjet")

    assert first.exit_code == 0, first.output
    added = suppressed(project_dir)
    assert {("gone@example.com", "hard-bounce"), ("annoyed@example.com", "complaint")} <= added
    assert not {a for a, _ in added} & {"full@example.com", "happy@example.com"}
    statuses = sorted(
        r.path.split("MessageStatus=")[1].split("&")[0] for r in mailjet_messages.requests
    )
    assert statuses == ["10", "6", "9"]
    assert all("ShowContactAlt=true" in r.path for r in mailjet_messages.requests)
    assert all(r.headers["Authorization"].startswith("Basic ") for r in mailjet_messages.requests)
    events = ledger_events(open_project(project_dir).settings.ledger_path)
    gone = next(e for e in events if e["address"] == "gone@example.com")
    assert gone["issue"] == ISSUE

    second = run(project_dir, "--provider", "mailjet")
    assert "already processed: 3 (skipped)" in second.output
    assert "hard bounces: 0" in second.output


def test_mailjet_without_keys_says_which_variables_to_set(
    project_dir: Path, mailjet_messages: FakeMailjetMessages, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailjet_messages.configure(monkeypatch)
    monkeypatch.delenv("NEWSLETTER_MAILJET_SECRET_KEY")
    result = run(project_dir, "--provider", "mailjet")
    assert result.exit_code == 1
    assert "NEWSLETTER_MAILJET_API_KEY and NEWSLETTER_MAILJET_SECRET_KEY" in result.output
    assert mailjet_messages.requests == []
    assert MAILJET_SECRET not in result.output


# --- GOV.UK Notify: permanent failures of what we sent --------------------------


@pytest.fixture
def notify_sent(
    project_dir: Path, notify_server: FakeNotify, monkeypatch: pytest.MonkeyPatch
) -> FakeNotify:
    """The sample issue sent through the Notify route, one address of which does not exist."""
    notify_server.configure(monkeypatch)
    settings = project_dir / "newsletter.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8") + f"\nnotify:\n  template_id: {TEMPLATE_ID}\n",
        encoding="utf-8",
    )
    speed_up(project_dir)  # what comes back is the subject here, not the pace of the send
    notify_server.bounce("j.okafor@example.org")
    notify_server.add_notification(
        "council-tax-reminder-17", "other@example.com", "permanent-failure"
    )
    sent = CliRunner().invoke(cli, ["--root", str(project_dir), "send", ISSUE, "--send", "--yes"])
    assert sent.exit_code == 0, sent.output
    return notify_server


def test_notify_permanent_failures_are_suppressed_once_as_hard_bounces(
    project_dir: Path, notify_sent: FakeNotify
) -> None:
    before = suppressed(project_dir)

    dry = run(project_dir, "--provider", "notify", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "hard bounces: 1 (1 would be added to the suppression list)" in dry.output
    assert suppressed(project_dir) == before

    first = run(project_dir, "--provider", "notify")

    assert first.exit_code == 0, first.output
    assert f"read notify API {notify_sent.url}" in first.output
    assert "hard bounces: 1 (1 added to the suppression list)" in first.output
    # Another team's email through the same Notify service is none of our business.
    assert suppressed(project_dir) - before == {("j.okafor@example.org", "hard-bounce")}
    [event] = ledger_events(open_project(project_dir).settings.ledger_path)
    assert event["address"] == "j.okafor@example.org" and event["issue"] == ISSUE
    assert event["kind"] == "hard-bounce"

    second = run(project_dir, "--provider", "notify")
    assert "already processed: 1 (skipped)" in second.output
    assert "hard bounces: 0" in second.output
    listed = [r for r in notify_sent.requests if r.method == "GET"]
    assert all(r.query["status"] == ["permanent-failure"] for r in listed)


def test_notify_without_a_key_says_which_variable_to_set(
    project_dir: Path, notify_server: FakeNotify
) -> None:
    result = run(project_dir, "--provider", "notify")
    assert result.exit_code == 1
    assert "NEWSLETTER_NOTIFY_API_KEY" in result.output and "Traceback" not in result.output
    assert notify_server.requests == []
