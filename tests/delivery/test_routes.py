"""The Microsoft 365 and GOV.UK Notify routes wired in: `newsletter send`, `dispatch`, `validate`,
the dry run, test copies and the preview, against the local fakes.

Each route is set up as a team would set it up: `newsletter.yaml` plus
NEWSLETTER_* variables, read by the settings; nothing is built by hand. The
fakes (tests/support/microsoft.py, tests/support/notify.py) check every
request against the service's documented contract. Where a token has to
expire in the middle of a send, the run's clock is a `FakeClock` shared with
the identity platform, handed to `send_issue` (the library call the
`send` command makes); everything else goes through the command line.
"""

from __future__ import annotations

import base64
import csv
import logging
import re
import traceback
from collections import Counter
from datetime import datetime
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.ledger.deliveries import Ledger
from newsletter.transports.microsoft.identity import GRAPH_SCOPE, SMTP_SCOPE
from newsletter.web.preview import start_preview
from tests.support.clock import FakeClock
from tests.support.microsoft import (
    CLIENT_SECRET,
    MAILBOX,
    FakeGraph,
    FakeIdentityPlatform,
    XOAuth2Server,
)
from tests.support.notify import API_KEY, KEY_SECRET, TEMPLATE_ID, FakeNotify
from tests.support.project import ISSUE, edit_issue, set_per_day, speed_up
from tests.support.smtp import SmtpTestServer

RECIPIENTS = 67  # the sample audience
DAY = 24 * 3600
BRUISING = "Bruising in non-mobile infants"
BRUISING_AGENCIES = {"health", "childrens-social-care", "police", "education"}


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def edit_settings(project_dir: Path, pattern: str, replacement: str) -> None:
    path = project_dir / "newsletter.yaml"
    text, n = re.subn(pattern, replacement, path.read_text(encoding="utf-8"), flags=re.M)
    assert n == 1, pattern
    path.write_text(text, encoding="utf-8")


def add_settings(project_dir: Path, text: str) -> None:
    path = project_dir / "newsletter.yaml"
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def agencies(project_dir: Path) -> dict[str, str]:
    """Each address (lower case) and its agency, from the sample lists."""
    found: dict[str, str] = {}
    for path in sorted((project_dir / "recipients" / "lists").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                found.setdefault(row["email"].strip().lower(), row["agency"].strip().lower())
    return found


def everywhere(result: Result, caplog: pytest.LogCaptureFixture, root: Path) -> str:
    """All a person or a log collector could see: output, logs, traceback, every file."""
    seen = [result.output, caplog.text]
    if result.exc_info is not None:
        seen.append("".join(traceback.format_exception(*result.exc_info)))
    seen += [p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file()]
    return "\n".join(seen)


def forms(*secrets: str) -> list[str]:
    return [f for s in secrets for f in (s, base64.b64encode(s.encode()).decode())]


# --- Microsoft 365 SMTP with OAuth2 --------------------------------------------


@pytest.fixture
def smtp_oauth_project(
    project_dir: Path,
    xoauth2_smtp: XOAuth2Server,
    identity: FakeIdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """`transport: smtp` with `smtp.auth: oauth2`, the app registration in the environment."""
    xoauth2_smtp.configure(monkeypatch)
    identity.configure(monkeypatch)
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", MAILBOX)
    edit_settings(project_dir, r"^  connections: 2$", "  connections: 2\n  auth: oauth2")
    speed_up(project_dir)
    return project_dir


def test_send_through_microsoft_365_smtp_logs_in_with_one_shared_token(
    smtp_oauth_project: Path, xoauth2_smtp: XOAuth2Server, identity: FakeIdentityPlatform
) -> None:
    result = run(smtp_oauth_project, "send", ISSUE, "--send", "--yes")

    assert result.exit_code == 0, result.output
    assert f"Sent {RECIPIENTS};" in result.output
    delivered = Counter(a.lower() for a in xoauth2_smtp.recipients())
    assert len(delivered) == RECIPIENTS and set(delivered.values()) == {1}
    # Two connections (smtp.connections: 2) and one token, fetched once for the run.
    assert identity.token_requests == [{"scope": SMTP_SCOPE}]
    assert set(xoauth2_smtp.checks.auths) == set(identity.tokens_for(SMTP_SCOPE))
    assert len(xoauth2_smtp.checks.auths) == 2


def test_a_long_smtp_send_refreshes_its_token_mid_run_and_carries_over_a_daily_cap(
    smtp_oauth_project: Path,
    xoauth2_smtp: XOAuth2Server,
    identity: FakeIdentityPlatform,
    ms_clock: FakeClock,
) -> None:
    # Microsoft 365's pace, scaled down: 10 a minute, 30 a day, tokens of 400 seconds.
    edit_settings(smtp_oauth_project, r"^  per_minute: .*$", "  per_minute: 10")
    set_per_day(smtp_oauth_project, 30)
    identity.expires_in = 400
    project = open_project(smtp_oauth_project)
    issue = project.load_issue(ISSUE)
    start = ms_clock.time()

    first = send_issue(project, issue, SendOptions(), clock=ms_clock)

    assert first.sent == 30 and first.daily_cap is not None and first.ok
    assert ms_clock.time() - start >= 120  # the rate limit spread them over minutes...
    assert len(set(xoauth2_smtp.checks.auths)) >= 2  # ...so the token was renewed mid-run
    assert xoauth2_smtp.checks.refusals == []  # before it ever expired

    ms_clock.advance(3 * 3600)  # same day: the cap still holds, nothing is sent
    assert send_issue(project, issue, SendOptions(), clock=ms_clock).sent == 0
    runs = [first]
    while runs[-1].daily_cap is not None:  # each later day, as soon as the window has room
        assert runs[-1].daily_cap.reopens_at is not None
        ms_clock.now = runs[-1].daily_cap.reopens_at
        runs.append(send_issue(project, issue, SendOptions(), clock=ms_clock))
        assert 0 < runs[-1].sent <= 30 and len(runs) < 10

    assert sum(r.sent for r in runs) == RECIPIENTS and len(runs) >= 3
    delivered = Counter(a.lower() for a in xoauth2_smtp.recipients())
    assert len(delivered) == RECIPIENTS and set(delivered.values()) == {1}
    assert xoauth2_smtp.checks.refusals == []
    with Ledger(project.settings.ledger_path) as ledger:
        assert ledger.summary(ISSUE).complete
        times = sorted(
            datetime.fromisoformat(str(r.sent_at)).timestamp() for r in ledger.rows(ISSUE, ["sent"])
        )
    # Microsoft's rule: never more than the cap in any 24 hours.
    assert max(sum(1 for t in times if end - DAY < t <= end) for end in times) <= 30


def test_no_secret_or_token_is_shown_even_with_verbose_or_a_refusal(
    smtp_oauth_project: Path,
    xoauth2_smtp: XOAuth2Server,
    identity: FakeIdentityPlatform,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sent = run(smtp_oauth_project, "--verbose", "send", ISSUE, "--send", "--yes", "--limit", "3")
    assert sent.exit_code == 0, sent.output
    assert "Delivery: smtp:" in sent.stderr and "XOAUTH2 as comms@example.org" in sent.stderr

    xoauth2_smtp.checks.refuse_every = True  # the mailbox stops accepting the app
    refused = run(smtp_oauth_project, "--verbose", "send", ISSUE, "--send", "--yes")
    assert refused.exit_code == 1
    assert "535 5.7.3" in refused.stderr and "SMTP.SendAsApp" in refused.stderr
    assert "Traceback" not in refused.output

    tokens = identity.tokens_for(SMTP_SCOPE)
    assert len(tokens) >= 2  # a refused token is replaced once: both must stay hidden
    seen = everywhere(sent, caplog, smtp_oauth_project) + everywhere(
        refused, caplog, smtp_oauth_project
    )
    assert "AUTH XOAUTH2" in caplog.text  # the SMTP dialogue really was logged
    xoauth2 = [f"user={MAILBOX}\x01auth=Bearer {token}\x01\x01" for token in tokens]
    for secret in forms(CLIENT_SECRET, *tokens, *xoauth2):
        assert secret not in seen


# --- Microsoft Graph --------------------------------------------------------


@pytest.fixture
def graph_project(
    project_dir: Path,
    graph: FakeGraph,
    identity: FakeIdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    identity.configure(monkeypatch)
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "graph")
    monkeypatch.setenv("NEWSLETTER_GRAPH_URL", graph.url)
    speed_up(project_dir)
    return project_dir


def test_send_through_graph_posts_each_message_as_the_from_mailbox(
    graph_project: Path,
    graph: FakeGraph,
    identity: FakeIdentityPlatform,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    result = run(graph_project, "--verbose", "send", ISSUE, "--send", "--yes")

    assert result.exit_code == 0, result.output
    assert "Delivery: graph: sendMail as comms@example.org" in result.stderr
    delivered = Counter(a.lower() for a in graph.recipients())
    assert len(delivered) == RECIPIENTS and set(delivered.values()) == {1}
    assert identity.token_requests == [{"scope": GRAPH_SCOPE}]  # one token for the run
    with Ledger(open_project(graph_project).settings.ledger_path) as ledger:
        rows = list(ledger.rows(ISSUE, ["sent"]))
    assert len(rows) == RECIPIENTS and all(r.provider_message_id for r in rows)
    seen = everywhere(result, caplog, graph_project)
    for secret in forms(CLIENT_SECRET, *identity.tokens_for(GRAPH_SCOPE)):
        assert secret not in seen


def test_dispatch_through_graph_is_throttled_and_carries_on_the_next_day(
    graph_project: Path, graph: FakeGraph, identity: FakeIdentityPlatform
) -> None:
    set_per_day(graph_project, 40)
    edit_issue(graph_project, approved=True)
    graph.respond(429, None, {"Retry-After": "0"})  # Graph throttling, honoured

    monday = run(graph_project, "dispatch", "--now", "2023-05-15T09:00:00+01:00")
    assert monday.exit_code == 0, monday.output
    assert "40 sent" in monday.output and "daily cap reached" in monday.output
    tuesday = run(graph_project, "dispatch", "--now", "2023-05-16T09:01:00+01:00")
    assert tuesday.exit_code == 0, tuesday.output
    assert f"{ISSUE}: finished: {RECIPIENTS - 40} sent" in tuesday.output

    delivered = Counter(a.lower() for a in graph.recipients())
    assert len(delivered) == RECIPIENTS and set(delivered.values()) == {1}


def test_graph_without_mail_send_stops_the_run_with_the_permission_to_grant(
    graph_project: Path, graph: FakeGraph
) -> None:
    graph.deny_mail_send()
    result = run(graph_project, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 1
    assert "Mail.Send" in result.stderr and "admin consent" in result.stderr
    assert graph.accepted == []


# --- GOV.UK Notify ------------------------------------------------------------


@pytest.fixture
def notify_project(
    project_dir: Path, notify_server: FakeNotify, monkeypatch: pytest.MonkeyPatch
) -> Path:
    notify_server.configure(monkeypatch)
    add_settings(project_dir, f"\nnotify:\n  template_id: {TEMPLATE_ID}\n")
    speed_up(project_dir)
    return project_dir


def test_send_through_notify_fills_each_persons_body_in_notify_formatting(
    notify_project: Path, notify_server: FakeNotify
) -> None:
    result = run(notify_project, "send", ISSUE, "--send", "--yes")

    assert result.exit_code == 0, result.output
    assert f"Sent {RECIPIENTS};" in result.output
    sent = {n["email_address"].lower(): n for n in notify_server.sent}
    assert len(sent) == len(notify_server.sent) == RECIPIENTS
    issue = open_project(notify_project).load_issue(ISSUE)
    agency_of = agencies(notify_project)
    with Ledger(open_project(notify_project).settings.ledger_path) as ledger:
        for address, notification in sent.items():
            body = notification["personalisation"]["body"]
            assert notification["personalisation"]["subject"] == issue.subject
            assert f"this email was sent to {address}" in body.lower()
            assert body.startswith("Children's MARS Board News Update")
            # Each person's own variant: the Bruising section only for those agencies.
            assert (f"# {BRUISING}" in body) == (agency_of[address] in BRUISING_AGENCIES)
            assert "\n^ For information and consideration:" in body  # prompts as inset text
            row = ledger.lookup(ISSUE, address)
            assert row is not None and row.state == "sent"
            assert notification["reference"] == row.message_id
            assert row.provider_message_id == notification["id"]


def test_notify_test_copies_carry_the_notify_body_too(
    notify_project: Path, notify_server: FakeNotify
) -> None:
    result = run(notify_project, "send", ISSUE, "--test-to", "me@example.org", "--send", "--yes")
    assert result.exit_code == 0, result.output
    copies = notify_server.sent
    assert [c["email_address"] for c in copies] == ["me@example.org"] * 2  # one per variant
    assert all(c["personalisation"]["subject"].startswith("[TEST") for c in copies)
    assert sorted(f"# {BRUISING}" in c["personalisation"]["body"] for c in copies) == [
        False,
        True,
    ]


def test_the_notify_key_is_never_shown_even_when_notify_refuses_it(
    notify_project: Path, notify_server: FakeNotify, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ok = run(notify_project, "--verbose", "send", ISSUE, "--send", "--yes", "--limit", "2")
    assert ok.exit_code == 0, ok.output
    assert "Delivery: notify: GOV.UK Notify at" in ok.stderr
    notify_server.respond(403, "AuthError", "Invalid token: API key not found")
    refused = run(notify_project, "--verbose", "send", ISSUE, "--send", "--yes")
    assert refused.exit_code == 1
    assert "NEWSLETTER_NOTIFY_API_KEY" in refused.stderr
    seen = everywhere(ok, caplog, notify_project) + everywhere(refused, caplog, notify_project)
    for secret in (API_KEY, KEY_SECRET):
        assert secret not in seen


def test_the_preview_shows_the_notify_version_of_the_chosen_variant(
    notify_project: Path,
) -> None:
    project = open_project(notify_project)
    server = start_preview(project, ISSUE, port=0)
    try:
        pages = {
            key: lxml.html.document_fromstring(server.page(key, "desktop"))
            for key in (item.variant.key for item in server.state().variants)
        }
    finally:
        server.stop()
    assert len(pages) == 2
    bodies = {
        key: page.get_element_by_id("provider-body").text_content() for key, page in pages.items()
    }
    for key, page in pages.items():
        assert "GOV.UK Notify version" in page.get_element_by_id("provider-heading").text_content()
        assert bodies[key].startswith("Children's MARS Board News Update")
        assert "\n^ For information and consideration:" in bodies[key]
    assert sorted(f"# {BRUISING}" in body for body in bodies.values()) == [False, True]


def test_the_preview_has_no_notify_section_for_other_routes(project_dir: Path) -> None:
    server = start_preview(open_project(project_dir), ISSUE, port=0)
    try:
        page = lxml.html.document_fromstring(server.page(None, "desktop"))
    finally:
        server.stop()
    assert page.get_element_by_id("text-part") is not None
    assert not page.xpath("//*[@id='provider-body']")


# --- choosing a route: validate and the dry run ------------------------------------


def test_validate_and_the_dry_run_name_the_route_and_what_it_still_needs(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit_settings(project_dir, r"^transport: outbox .*$", "transport: smtp")
    edit_settings(project_dir, r"^  connections: 2$", "  connections: 2\n  auth: oauth2")
    monkeypatch.setenv("NEWSLETTER_OAUTH_TENANT_ID", "6f2c7a4e-0b1d-4c55-9e21-5a0c1d2e3f40")

    checked = run(project_dir, "validate")

    assert checked.exit_code == 0, checked.output  # content is fine; the secrets come later
    route = "route: Microsoft 365 SMTP with OAuth2 (smtp.example.org:587)"
    missing = "NEWSLETTER_OAUTH_CLIENT_ID, NEWSLETTER_OAUTH_CLIENT_SECRET (or NEWSLETTER_OAUTH_CERTIFICATE_PATH)"
    assert f"{route}; missing {missing}" in checked.stdout
    [warning] = [line for line in checked.stdout.splitlines() if "needs NEWSLETTER_OAUTH" in line]
    line = next(
        n
        for n, text in enumerate((project_dir / "newsletter.yaml").read_text().splitlines(), 1)
        if text.startswith("transport:")
    )
    assert warning.startswith(f"{project_dir / 'newsletter.yaml'}:{line}:")

    plan = run(project_dir, "send", ISSUE)
    assert plan.exit_code == 0, plan.output
    assert (
        f"Route:      Microsoft 365 SMTP with OAuth2 (smtp.example.org:587); missing {missing}"
        in plan.stdout
    )

    refused = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert refused.exit_code == 1
    assert "set NEWSLETTER_OAUTH_CLIENT_ID, NEWSLETTER_OAUTH_CLIENT_SECRET" in refused.stderr
    assert not (project_dir / "var" / "ledger.sqlite3").exists()  # stopped before the ledger


@pytest.mark.parametrize(
    ("transport", "route"),
    [
        ("outbox", "route: the outbox, a Maildir at"),
        ("notify", "route: GOV.UK Notify; missing NEWSLETTER_NOTIFY_API_KEY, notify.template_id"),
        ("graph", "route: Microsoft 365 Graph sendMail as comms@example.org; missing"),
        (
            "postmark",
            "route: the Postmark API at https://api.postmarkapp.com; missing NEWSLETTER_POSTMARK_TOKEN",
        ),
    ],
)
def test_each_route_is_named_by_validate(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, transport: str, route: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", transport)
    checked = run(project_dir, "validate")
    assert checked.exit_code == 0, checked.output
    assert route in checked.stdout


def test_a_notify_template_id_that_is_not_an_id_is_a_located_error(project_dir: Path) -> None:
    add_settings(project_dir, "\nnotify:\n  template_id: News Update\n")
    checked = run(project_dir, "validate")
    assert checked.exit_code == 1
    assert "`notify.template_id` must be the ID GOV.UK Notify shows" in checked.stderr
    assert f"{project_dir / 'newsletter.yaml'}:" in checked.stderr


def test_smtp_auth_none_never_logs_in_even_with_credentials_in_the_environment(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.configure(monkeypatch)  # a relay that offers no AUTH at all
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", "comms-robot")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "Left-0ver-Passw0rd")
    speed_up(project_dir)
    refused = run(project_dir, "send", ISSUE, "--send", "--yes", "--limit", "1")
    assert refused.exit_code == 1 and "AUTH" in refused.stderr  # password: it tries to log in

    edit_settings(project_dir, r"^  connections: 2$", "  connections: 2\n  auth: none")
    assert "route: the SMTP relay 127.0.0.1" in run(project_dir, "validate").stdout
    sent = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert sent.exit_code == 0, sent.output
    assert len(smtp_server.recipients()) == RECIPIENTS
