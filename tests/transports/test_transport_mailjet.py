"""The Mailjet transport against a local server that follows the Send API v3.1 contract."""

from __future__ import annotations

import base64
import traceback

import pytest

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.project import open_project
from newsletter.core.settings import Secret
from newsletter.transports.http import RetryPolicy
from newsletter.transports.lookup import open_transport
from newsletter.transports.mailjet.send import MailjetTransport
from newsletter.transports.provider_settings import ProviderSettings
from tests.support.providers import MAILJET_KEY, MAILJET_SECRET


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def mailjet(mailjet_server, sleeps):
    transport = MailjetTransport(
        mailjet_server.provider_settings(), sleep=sleeps.append, retry=RetryPolicy(attempts=3)
    )
    yield transport
    transport.close()


@pytest.mark.usefixtures("one_click")
def test_messages_are_sent_with_basic_auth_and_the_v31_shape(
    mailjet, mailjet_server, make_outgoing
) -> None:
    messages = make_outgoing(["jo@example.org", "sam@example.com"])
    results = mailjet.send_batch(messages)

    assert [r.status for r in results] == ["sent", "sent"]
    assert all(r.provider_id for r in results)  # Mailjet's MessageUUID
    [request] = mailjet_server.requests
    assert request.path == "/v3.1/send"
    expected = base64.b64encode(f"{MAILJET_KEY}:{MAILJET_SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    first = request.json["Messages"][0]
    original = messages[0].message
    assert first["From"] == {
        "Email": original["From"].addresses[0].addr_spec,
        "Name": original["From"].addresses[0].display_name,
    }
    assert first["To"] == [{"Email": "jo@example.org", "Name": "Reader Nº1"}]
    assert first["Subject"] == original["Subject"]
    assert first["TextPart"].startswith("Dear Reader Nº1")
    assert "<p>Dear Reader Nº1</p>" in first["HTMLPart"]
    assert first["ReplyTo"]["Email"] == original["Reply-To"].addresses[0].addr_spec
    assert first["CustomID"] == messages[0].message_id.strip("<>")
    headers = first["Headers"]
    assert headers["Message-ID"] == messages[0].message_id
    assert headers["List-Unsubscribe"] == str(original["List-Unsubscribe"])
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == str(original["List-Id"])
    assert mailjet_server.sent_to() == ["jo@example.org", "sam@example.com"]


def test_batches_are_split_at_fifty(mailjet, mailjet_server, make_outgoing) -> None:
    messages = make_outgoing(120, shared=True)
    results = mailjet.send_batch(messages)
    assert len(results) == 120 and all(r.ok for r in results)
    assert [len(r.json["Messages"]) for r in mailjet_server.requests] == [50, 50, 20]


def test_a_partly_failed_call_marks_exactly_the_failed_recipients(
    mailjet, mailjet_server, make_outgoing
) -> None:
    """Mailjet answers 400 when any message fails, yet sends the others."""
    mailjet_server.fail_address("reader2@example.org", 400)
    mailjet_server.fail_address("reader4@example.org", 503, "temporarily unavailable")
    results = mailjet.send_batch(make_outgoing(5))
    assert [r.status for r in results] == [
        "sent",
        "failed-permanent",
        "sent",
        "failed-temporary",
        "sent",
    ]
    assert "invalid email address" in results[1].detail
    assert len(mailjet_server.requests) == 1
    assert mailjet_server.sent_to() == [
        "reader1@example.org",
        "reader3@example.org",
        "reader5@example.org",
    ]


def test_429_honours_retry_after(mailjet, mailjet_server, sleeps, make_outgoing) -> None:
    mailjet_server.respond(429, headers={"Retry-After": "4"})
    assert [r.status for r in mailjet.send_batch(make_outgoing(2))] == ["sent", "sent"]
    assert sleeps == [4.0]


def test_500_is_retried_then_given_back_as_temporary(
    mailjet, mailjet_server, sleeps, make_outgoing
) -> None:
    mailjet_server.respond(500, times=5)
    results = mailjet.send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["failed-temporary", "failed-temporary"]
    assert len(mailjet_server.requests) == 3 and sleeps == [1.0, 2.0]
    mailjet_server.requests.clear()
    assert [r.status for r in mailjet.send_batch(make_outgoing(2))] == ["sent", "sent"]


@pytest.mark.parametrize("status", [400, 413])
def test_a_refusal_of_the_whole_request_stops_and_fails_nobody(
    mailjet, mailjet_server, make_outgoing, status
) -> None:
    mailjet_server.respond(
        status, body={"ErrorIdentifier": "x", "StatusCode": status, "ErrorMessage": "Invalid From"}
    )
    with pytest.raises(DeliveryError, match="not about any one recipient") as caught:
        mailjet.send_batch(make_outgoing(3))
    assert f"HTTP {status}" in str(caught.value) and "Invalid From" in str(caught.value)


def test_an_error_about_the_sender_stops_and_keeps_what_was_sent(
    mailjet, mailjet_server, make_outgoing
) -> None:
    mailjet_server.fail_address(
        "reader2@example.org", 400, "The From email address is not validated", "From.Email"
    )
    results = mailjet.send_batch(make_outgoing(3))
    assert [(r.status, r.halted) for r in results] == [
        ("sent", False),
        ("failed-temporary", True),
        ("sent", False),
    ]
    assert "not validated" in results[1].detail
    with pytest.raises(DeliveryError, match="not about any one recipient"):
        mailjet.send_batch(make_outgoing(1))


def test_an_error_about_the_sender_on_every_message_stops_at_once(
    mailjet, mailjet_server, make_outgoing
) -> None:
    for n in (1, 2):
        mailjet_server.fail_address(
            f"reader{n}@example.org", 400, "The From email address is not validated", "From.Email"
        )
    with pytest.raises(DeliveryError, match="not validated"):
        mailjet.send_batch(make_outgoing(2))


def test_a_request_answered_by_a_hang_up_is_unknown_and_not_resent(
    mailjet, mailjet_server, sleeps, make_outgoing
) -> None:
    mailjet_server.accept_then_hang_up()
    results = mailjet.send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["unknown", "unknown"]
    assert "closed the connection without answering" in results[0].detail
    assert len(mailjet_server.requests) == 1 and sleeps == []
    assert len(mailjet_server.sent_to()) == 2  # it had accepted them


def test_wrong_keys_stop_the_run_without_showing_them(mailjet_server, make_outgoing) -> None:
    wrong_secret = "mj-WRONG-secret-1234567"
    transport = MailjetTransport(
        ProviderSettings("mailjet", mailjet_server.url, Secret(MAILJET_KEY), Secret(wrong_secret))
    )
    with pytest.raises(DeliveryError) as caught:
        transport.send_batch(make_outgoing(1))
    printed = "".join(traceback.format_exception(caught.value))
    assert "401" in printed and "NEWSLETTER_MAILJET_SECRET_KEY" in printed
    assert wrong_secret not in printed
    assert base64.b64encode(f"{MAILJET_KEY}:{wrong_secret}".encode()).decode() not in printed
    transport.close()


def test_secret_echoed_by_the_provider_is_scrubbed(mailjet, mailjet_server, make_outgoing) -> None:
    mailjet_server.fail_address("reader1@example.org", 400, f"bad auth {MAILJET_SECRET}")
    [result] = mailjet.send_batch(make_outgoing(1))
    assert result.status == "failed-permanent"
    assert MAILJET_SECRET not in result.detail and "********" in result.detail


def test_open_transport_reads_the_keys_from_the_environment(
    project_dir, mailjet_server, monkeypatch, make_outgoing
) -> None:
    mailjet_server.configure(monkeypatch)
    transport = open_transport(open_project(project_dir).settings)
    assert transport.name == "mailjet" and transport.batch_size == 50
    assert transport.send_batch(make_outgoing(1))[0].ok
    transport.close()


def test_mailjet_without_a_secret_key_is_a_clear_config_error(project_dir, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "mailjet")
    monkeypatch.setenv("NEWSLETTER_MAILJET_API_KEY", MAILJET_KEY)
    with pytest.raises(ConfigError, match="NEWSLETTER_MAILJET_SECRET_KEY"):
        open_transport(open_project(project_dir).settings)
