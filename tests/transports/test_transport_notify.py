"""GOV.UK Notify: the issue in Notify's formatting, and the transport against a local Notify API.

The fake Notify (tests/support/notify.py) verifies the client's JWT with the
API key's secret and checks every request body; see its docstring.
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parseaddr

import pytest
from notifications_python_client.notifications import NotificationsAPIClient

from newsletter.audience.lists import Recipient, variant_for
from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.settings import Secret
from newsletter.render.message import build_message
from newsletter.render.variants import PersonalisedEmail
from newsletter.transports.base import OutgoingMessage
from newsletter.transports.http import RetryPolicy
from newsletter.transports.notify.body import NotifyRenderer, escape_line_starts, notify_markdown
from newsletter.transports.notify.feedback import permanent_failures
from newsletter.transports.notify.send import NotifyTransport, one_click_url
from tests.support.clock import FakeClock
from tests.support.notify import API_KEY, KEY_SECRET, SERVICE_ID, TEMPLATE_ID

ISSUE = "2023-05-panel-reports"


@pytest.fixture
def issue(project):
    return project.load_issue(ISSUE)


@pytest.fixture
def everything(issue):
    return variant_for(issue, tuple(s.id for s in issue.sections))


@pytest.fixture
def renderer(project, issue):
    return NotifyRenderer(project.settings, issue)


@pytest.fixture
def body_for(renderer, everything):
    """What the dispatcher wires in: the recipient's variant, their name from the message."""

    def body(outgoing: OutgoingMessage) -> str:
        name = parseaddr(str(outgoing.message["To"]))[0]
        return renderer.body(everything, Recipient(outgoing.recipient, name))

    return body


@pytest.fixture
def clock() -> FakeClock:
    # 22:00 UTC, two hours before Notify's daily limits reset.
    return FakeClock(datetime(2023, 5, 15, 22, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def notify(notify_server, body_for, clock):
    built: list[NotifyTransport] = []

    def build(**kwargs) -> NotifyTransport:
        kwargs.setdefault("retry", RetryPolicy(attempts=3, base_delay=1.0, max_wait=60.0))
        options = {"base_url": notify_server.url, "clock": clock, **kwargs}
        api_key = options.pop("api_key", notify_server.api_key())
        template = options.pop("template_id", TEMPLATE_ID)
        transport = NotifyTransport(api_key, template, body_for, **options)
        built.append(transport)
        return transport

    yield build
    for transport in built:
        transport.close()


# -- the issue in Notify's formatting --------------------------------------------


@pytest.mark.usefixtures("one_click")
def test_the_issue_reads_as_notify_formatting(renderer, everything, issue) -> None:
    body = renderer.body(everything, Recipient("jo@example.org", "Jo Bloggs"))
    lines = body.splitlines()

    assert f"# {issue.title}" in lines
    headings = [line[2:] for line in lines if line.startswith("# ")]
    assert headings == [issue.title, *(s.title for s in issue.sections)]
    # A rule before each section and before the footer.
    assert lines.count("---") == len(issue.sections) + 1
    assert "Dear Jo Bloggs," in lines
    assert "* Have we embedded these?" not in lines  # prompts live in the inset, not the bullets
    first = issue.sections[0]
    heading_at = lines.index(f"^ {first.prompts_heading}:")
    assert lines[heading_at + 1 : heading_at + 1 + len(first.prompts)] == [
        f"^ * {prompt}" for prompt in first.prompts
    ]
    assert f"* {first.points[0].text}" in lines
    assert first.links[0].url in lines  # a full address on its own line: Notify links it
    assert "<" not in body and "**" not in body  # no HTML, no bold: Notify shows neither
    assert "https://news.example.org/unsubscribe?address=jo%40example.org" in body
    assert f"{issue.id}/" in body  # the web version


def test_nested_bullets_sit_under_their_parent(renderer, everything, issue) -> None:
    section = next(s for s in issue.sections if any(p.points for p in s.points))
    parent = next(p for p in section.points if p.points)
    lines = renderer.body(everything, Recipient("jo@example.org", "")).splitlines()
    at = lines.index(f"* {notify_markdown(parent.text)}")
    assert lines[at + 1] == f"  * {notify_markdown(parent.points[0].text)}"


def test_a_variant_carries_only_its_sections_and_each_person_gets_their_own_parts(
    renderer, issue
) -> None:
    wanted = (issue.sections[0].id, issue.sections[2].id)
    variant = variant_for(issue, wanted)
    jo = renderer.body(variant, Recipient("jo@example.org", "Jo"))
    sam = renderer.body(variant, Recipient("sam@example.com", ""))

    headings = [line[2:] for line in jo.splitlines() if line.startswith("# ")]
    assert headings == [issue.title, issue.sections[0].title, issue.sections[2].title]
    assert "Dear Jo," in jo and "Hello," in sam
    assert "sent to jo@example.org." in jo and "sent to sam@example.com." in sam
    assert "jo@example.org" not in sam
    assert renderer.variant_body(variant) is renderer.variant_body(variant)  # rendered once


def test_without_a_one_click_address_the_footer_says_how_to_unsubscribe_by_email(
    project, issue, everything
) -> None:
    settings = replace(project.settings, unsubscribe_url=None)
    body = NotifyRenderer(settings, issue).body(everything, Recipient("jo@example.org", "Jo"))
    assert f"email {settings.unsubscribe_mailto} and ask to be taken off the list" in body
    assert "mailto:" not in body


def test_markdown_fields_are_walked_into_notify_formatting() -> None:
    assert (
        notify_markdown("Read **the [guidance](https://www.gov.uk/x)** _now_")
        == "Read the guidance (https://www.gov.uk/x) now"
    )
    assert notify_markdown("[https://www.gov.uk/x](https://www.gov.uk/x)") == "https://www.gov.uk/x"
    assert notify_markdown("Write to [us](mailto:ideas@example.org)") == (
        "Write to us (ideas@example.org)"
    )
    # An unsafe target never becomes a live link: either its words alone, or (when the
    # parser left it as text) brackets escaped so Notify shows them as they are.
    unsafe = notify_markdown("[click](javascript:alert(1)) here")
    assert unsafe in ("click here", r"\[click\](javascript:alert(1)) here")
    assert notify_markdown(r"a [bracket] and a \\ backslash") == (
        r"a \[bracket\] and a \\ backslash"
    )
    assert notify_markdown(r"a \*literal\* star") == "a *literal* star"
    assert notify_markdown("Line one\nline two") == "Line one line two"
    block = notify_markdown(
        "First paragraph\ncontinues.\n\n- one\n- two\n  - two a\n\n1. first\n2. second\n\n> quoted",
        block=True,
    )
    assert block.split("\n\n") == [
        "First paragraph continues.",
        "* one\n* two\n  * two a",
        "1. first\n2. second",
        "^ quoted",
    ]


def test_text_that_would_look_like_formatting_stays_text() -> None:
    assert escape_line_starts("# 1 priority") == r"\# 1 priority"
    assert escape_line_starts("2019. A year of reviews") == r"2019\. A year of reviews"
    assert escape_line_starts("- not a bullet\nfine") == "\\- not a bullet\nfine"
    assert escape_line_starts("a # in the middle") == "a # in the middle"
    assert notify_markdown(r"\# Not a heading") == r"\# Not a heading"


# -- the transport ---------------------------------------------------------------


def test_the_installed_client_takes_a_one_click_unsubscribe_url() -> None:
    parameters = inspect.signature(NotificationsAPIClient.send_email_notification).parameters
    assert "one_click_unsubscribe_url" in parameters and "reference" in parameters


@pytest.mark.usefixtures("one_click")
def test_each_email_uses_our_template_reference_and_one_click_address(
    notify, notify_server, make_outgoing, body_for
) -> None:
    messages = make_outgoing(["jo@example.org", "sam@example.com"])
    results = notify().send_batch(messages)

    assert [r.status for r in results] == ["sent", "sent"]
    assert notify_server.sent_to() == ["jo@example.org", "sam@example.com"]
    for outgoing, sent, result in zip(messages, notify_server.sent, results, strict=True):
        assert sent["template_id"] == TEMPLATE_ID
        assert sent["reference"] == outgoing.message_id
        assert sent["personalisation"] == {
            "subject": str(outgoing.message["Subject"]),
            "body": body_for(outgoing),
        }
        assert sent["one_click_unsubscribe_url"] == one_click_url(
            str(outgoing.message["List-Unsubscribe"])
        )
        assert sent["one_click_unsubscribe_url"].startswith("https://news.example.org/unsubscribe")
        assert result.provider_id == sent["id"]
    assert "Dear Reader Nº1," in notify_server.sent[0]["personalisation"]["body"]


def test_no_one_click_address_is_sent_when_there_is_only_a_mailto(
    notify, notify_server, project, issue
) -> None:
    settings = replace(project.settings, unsubscribe_url=None)
    recipient = Recipient("jo@example.org", "Jo")
    message = build_message(
        settings, issue, recipient, PersonalisedEmail(issue.subject, "<p>Hi</p>", "Hi\n")
    )
    outgoing = OutgoingMessage(recipient.email, str(message["Message-ID"]), message.as_bytes())
    assert notify().send_batch([outgoing])[0].ok
    assert "one_click_unsubscribe_url" not in notify_server.sent[0]


def test_an_address_notify_calls_invalid_is_permanent_and_the_rest_go(
    notify, notify_server, make_outgoing
) -> None:
    notify_server.invalid_address("bad@example.org")
    results = notify().send_batch(
        make_outgoing(["a@example.org", "bad@example.org", "b@example.org"])
    )
    assert [r.status for r in results] == ["sent", "failed-permanent", "sent"]
    assert "Not a valid email address" in results[1].detail


def test_rate_limiting_backs_off_and_then_sends(
    notify, notify_server, make_outgoing, clock
) -> None:
    notify_server.respond(
        429,
        "RateLimitError",
        "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds",
        times=2,
    )
    results = notify().send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["sent", "sent"]
    assert clock.sleeps == [1.0, 2.0]


def test_the_daily_limit_hands_the_rest_back_until_midnight_utc(
    notify, notify_server, make_outgoing, clock
) -> None:
    notify_server.respond(
        429, "TooManyRequestsError", "Exceeded send limits (email: 250000) for today"
    )
    results = notify().send_batch(make_outgoing(3))
    assert [(r.status, r.retry_after) for r in results] == [("failed-temporary", 7200.0)] * 3
    assert "daily limit" in results[0].detail
    assert clock.sleeps == []


def test_notify_being_down_leaves_the_batch_temporary(
    notify, notify_server, make_outgoing, clock
) -> None:
    notify_server.respond(500, "Exception", "Internal server error", times=3)
    results = notify().send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["failed-temporary", "failed-temporary"]
    assert "HTTP 500" in results[0].detail
    assert clock.sleeps == [1.0, 2.0]


def test_a_wrong_api_key_stops_the_run_without_showing_the_key(
    notify, notify_server, make_outgoing
) -> None:
    wrong = f"newsletter_live-{SERVICE_ID}-00000000-1111-4222-8333-444444444444"
    with pytest.raises(DeliveryError) as caught:
        notify(api_key=Secret(wrong)).send_batch(make_outgoing(2))
    printed = "".join(traceback.format_exception(caught.value))
    assert "AuthError" in printed and "NEWSLETTER_NOTIFY_API_KEY" in printed
    assert KEY_SECRET not in printed and "00000000-1111-4222-8333-444444444444" not in printed
    assert notify_server.sent == []


def test_a_key_that_is_not_a_notify_key_is_refused_before_sending(notify_server, body_for) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_NOTIFY_API_KEY"):
        NotifyTransport(Secret("not-a-key"), TEMPLATE_ID, body_for, base_url=notify_server.url)
    with pytest.raises(ConfigError, match=r"notify\.template_id"):
        NotifyTransport(Secret(API_KEY), "newsletter", body_for, base_url=notify_server.url)
    assert notify_server.requests == []


def test_trial_mode_and_an_unknown_template_stop_the_run_with_what_to_do(
    notify, notify_server, make_outgoing
) -> None:
    notify_server.trial_mode(team=["comms@example.org"])
    with pytest.raises(DeliveryError, match="live API key"):
        notify().send_batch(make_outgoing(1))
    with pytest.raises(DeliveryError, match=r"notify\.template_id"):
        notify(template_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d").send_batch(
            make_outgoing(["comms@example.org"])
        )


def test_permanent_failures_are_listed_newest_first_across_pages(
    notify, notify_server, make_outgoing
) -> None:
    notify_server.page_size = 2  # make paging happen with a handful of messages
    notify_server.add_notification("someone-elses-ref", "other@example.com", "permanent-failure")
    notify_server.bounce("gone@example.org")
    messages = make_outgoing(["a@example.org", "gone@example.org", "b@example.org"])
    assert all(r.ok for r in notify().send_batch(messages))
    notify_server.add_notification("another-ref", "x@example.com", "permanent-failure")
    notify_server.add_notification("more-ref", "y@example.com", "permanent-failure")

    failures = list(permanent_failures(notify_server.api_key(), base_url=notify_server.url))

    assert [(f.email_address, f.reference) for f in failures] == [
        ("y@example.com", "more-ref"),
        ("x@example.com", "another-ref"),
        ("gone@example.org", messages[1].message_id),
        ("other@example.com", "someone-elses-ref"),
    ]
    pages = [r for r in notify_server.requests if r.method == "GET"]
    assert len(pages) >= 3  # it followed older_than past the first page
    assert all(r.query["status"] == ["permanent-failure"] for r in pages)


def test_paging_stops_at_the_first_page_of_failures_read_before(notify_server) -> None:
    notify_server.page_size = 2
    for n in range(6):
        notify_server.add_notification(f"ref-{n}", f"old{n}@example.com", "permanent-failure")
    already = {n["id"] for n in notify_server.notifications[:5]}  # the five oldest were read
    notify_server.add_notification("ref-new", "new@example.com", "permanent-failure")

    failures = list(
        permanent_failures(
            notify_server.api_key(),
            base_url=notify_server.url,
            seen=lambda f: f.notification_id in already,
        )
    )

    # Pages: [new, old5], [old4, old3] (nothing new: stop), never [old2, old1] or [old0].
    assert [f.email_address for f in failures] == [
        "new@example.com",
        "old5@example.com",
        "old4@example.com",
        "old3@example.com",
    ]
    assert len([r for r in notify_server.requests if r.method == "GET"]) == 2


def test_the_api_key_never_reaches_the_logs(notify, notify_server, make_outgoing, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    notify_server.respond(500, "Exception", "Internal server error", times=1)
    assert notify().send_batch(make_outgoing(1))[0].ok
    assert "/v2/notifications/email" in caplog.text  # the client's own logs were captured
    assert KEY_SECRET not in caplog.text and API_KEY not in caplog.text


def test_an_email_taken_but_never_answered_is_unknown_and_sent_once(
    notify, notify_server, make_outgoing
) -> None:
    # The client reports a lost answer as HTTP 503; retrying it would email the person twice.
    notify_server.answer_late(2.0)
    [result] = notify(timeout=0.5).send_batch(make_outgoing(["jo@example.org"]))
    assert result.status == "unknown"
    assert "may have been sent" in result.detail
    assert notify_server.sent_to() == ["jo@example.org"]  # one request, never retried
