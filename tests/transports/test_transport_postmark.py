"""The Postmark transport against a local server that follows Postmark's batch API contract."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.project import open_project
from newsletter.transports.http import RetryPolicy, retry_after_seconds
from newsletter.transports.lookup import open_transport
from newsletter.transports.postmark.send import PostmarkTransport
from tests.support.providers import POSTMARK_TOKEN


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def postmark(postmark_server, sleeps):
    transport = PostmarkTransport(
        postmark_server.provider_settings(), sleep=sleeps.append, retry=RetryPolicy(attempts=4)
    )
    yield transport
    transport.close()


def test_a_batch_is_sent_with_the_token_header_and_postmark_shape(
    postmark, postmark_server, make_outgoing
) -> None:
    messages = make_outgoing(["jo@example.org", "sam@example.com"])
    results = postmark.send_batch(messages)

    assert [r.status for r in results] == ["sent", "sent"]
    assert all(r.provider_id for r in results)
    [request] = postmark_server.requests
    assert request.path == "/email/batch"
    assert request.headers["X-Postmark-Server-Token"] == POSTMARK_TOKEN
    assert "Authorization" not in request.headers
    first = request.json[0]
    original = messages[0].message
    assert first["To"] == "Reader Nº1 <jo@example.org>" or first["To"].endswith("<jo@example.org>")
    assert first["From"].endswith(f"<{original['From'].addresses[0].addr_spec}>")
    assert first["Subject"] == original["Subject"]
    assert first["TextBody"].startswith("Dear Reader Nº1")
    assert "<p>Dear Reader Nº1</p>" in first["HtmlBody"]
    assert first["ReplyTo"] == str(original["Reply-To"])
    assert first["MessageStream"] == "broadcast"
    headers = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert headers["Message-ID"] == messages[0].message_id
    for name in ("List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"):
        if original.get(name) is not None:
            assert headers[name] == str(original[name]), name
    assert "List-Unsubscribe" in headers
    assert postmark_server.sent_to() == ["jo@example.org", "sam@example.com"]


def test_1200_messages_go_in_three_batches_of_at_most_500(
    postmark, postmark_server, make_outgoing
) -> None:
    messages = make_outgoing(1200, shared=True)
    results = postmark.send_batch(messages)
    assert len(results) == 1200 and all(r.ok for r in results)
    assert [r.recipient for r in results] == [m.recipient for m in messages]
    assert [len(r.json) for r in postmark_server.requests] == [500, 500, 200]
    assert sorted(postmark_server.sent_to()) == sorted(m.recipient for m in messages)


def test_a_partly_failed_batch_marks_exactly_the_failed_recipients(
    postmark, postmark_server, make_outgoing
) -> None:
    messages = make_outgoing(6)
    postmark_server.fail_address("reader2@example.org", 406)
    postmark_server.fail_address("reader5@example.org", 300)
    results = postmark.send_batch(messages)
    assert [r.status for r in results] == [
        "sent",
        "failed-permanent",
        "sent",
        "sent",
        "failed-permanent",
        "sent",
    ]
    assert "406" in results[1].detail and "inactive" in results[1].detail
    assert "300" in results[4].detail
    assert len(postmark_server.requests) == 1  # nothing resent
    assert len(postmark_server.sent_to()) == 4


def test_429_waits_as_long_as_retry_after_says_then_sends(
    postmark, postmark_server, sleeps, make_outgoing
) -> None:
    postmark_server.respond(429, headers={"Retry-After": "7"})
    results = postmark.send_batch(make_outgoing(3))
    assert [r.status for r in results] == ["sent"] * 3
    assert sleeps == [7.0]
    assert len(postmark_server.requests) == 2


def test_500_is_retried_with_backoff(postmark, postmark_server, sleeps, make_outgoing) -> None:
    postmark_server.respond(500, times=2)
    results = postmark.send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["sent", "sent"]
    assert sleeps == [1.0, 2.0]


def test_retries_are_bounded_then_temporary(
    postmark, postmark_server, sleeps, make_outgoing
) -> None:
    postmark_server.respond(503, times=10)
    results = postmark.send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["failed-temporary", "failed-temporary"]
    assert "HTTP 503" in results[0].detail
    assert len(postmark_server.requests) == 4
    assert len(sleeps) == 3
    assert postmark_server.sent_to() == []


def test_a_long_retry_after_is_handed_to_the_dispatcher_not_slept(
    postmark, postmark_server, sleeps, make_outgoing
) -> None:
    postmark_server.respond(429, headers={"Retry-After": "3600"})
    results = postmark.send_batch(make_outgoing(2))
    assert [(r.status, r.retry_after) for r in results] == [("failed-temporary", 3600.0)] * 2
    assert sleeps == []
    assert len(postmark_server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (422, {"ErrorCode": 300, "Message": "Invalid 'From' address: 'news@'."}),
        (422, {"ErrorCode": 410, "Message": "Too many batch messages."}),
        (422, {"ErrorCode": 300, "Message": "Invalid 'To' address: 'x'."}),  # which of 3?
        (413, {"ErrorCode": 0, "Message": "Payload Too Large"}),
    ],
)
def test_a_refusal_of_the_whole_batch_stops_and_fails_nobody(
    postmark, postmark_server, make_outgoing, status, body
) -> None:
    postmark_server.respond(status, body=body)
    with pytest.raises(DeliveryError, match="not about any one recipient") as caught:
        postmark.send_batch(make_outgoing(3))
    assert f"HTTP {status}" in str(caught.value) and body["Message"] in str(caught.value)


def test_a_one_message_request_refused_for_its_recipient_is_theirs(
    postmark, postmark_server, make_outgoing
) -> None:
    postmark_server.respond(422, body={"ErrorCode": 406, "Message": "Inactive recipient."})
    [result] = postmark.send_batch(make_outgoing(1))
    assert result.status == "failed-permanent" and "406" in result.detail


def test_an_invalid_from_for_one_message_stops_and_keeps_what_was_sent(
    postmark, postmark_server, make_outgoing
) -> None:
    postmark_server.fail_address("reader2@example.org", 300, "Invalid 'From' address: 'x'.")
    postmark_server.fail_address("reader3@example.org", 406)
    results = postmark.send_batch(make_outgoing(4))
    assert [(r.status, r.halted) for r in results] == [
        ("sent", False),
        ("failed-temporary", True),
        ("failed-permanent", False),
        ("sent", False),
    ]
    assert "Invalid 'From' address" in results[1].detail
    with pytest.raises(DeliveryError, match="Invalid 'From' address"):
        postmark.send_batch(make_outgoing(1))


@pytest.mark.parametrize("error_code", [410, 412, 413, 999])
def test_codes_not_about_the_recipient_on_every_message_stop_at_once(
    postmark, postmark_server, make_outgoing, error_code
) -> None:
    for n in (1, 2):
        postmark_server.fail_address(f"reader{n}@example.org", error_code, "Not today")
    with pytest.raises(DeliveryError, match=f"error {error_code}"):
        postmark.send_batch(make_outgoing(2))


def test_a_request_answered_too_late_is_unknown_and_not_resent(
    postmark_server, sleeps, make_outgoing
) -> None:
    transport = PostmarkTransport(
        postmark_server.provider_settings(), sleep=sleeps.append, timeout=0.3
    )
    postmark_server.accept_then_stall(1.5)
    try:
        results = transport.send_batch(make_outgoing(3))
    finally:
        transport.close()
    assert [r.status for r in results] == ["unknown"] * 3
    assert "gave no answer within 0.3 s" in results[0].detail
    assert len(postmark_server.requests) == 1 and sleeps == []
    assert len(postmark_server.sent_to()) == 3  # Postmark had taken them


def test_a_request_answered_by_a_hang_up_is_unknown_and_not_resent(
    postmark, postmark_server, sleeps, make_outgoing
) -> None:
    postmark_server.accept_then_hang_up()
    results = postmark.send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["unknown", "unknown"]
    assert len(postmark_server.requests) == 1 and sleeps == []


def test_a_provider_that_cannot_be_reached_is_retried_then_temporary(
    postmark_server, sleeps, make_outgoing
) -> None:
    url = postmark_server.url
    postmark_server.stop()  # nothing listens: the request never went out
    from newsletter.core.settings import Secret
    from newsletter.transports.provider_settings import ProviderSettings

    transport = PostmarkTransport(
        ProviderSettings("postmark", url, Secret(POSTMARK_TOKEN)),
        sleep=sleeps.append,
        retry=RetryPolicy(attempts=2),
    )
    results = transport.send_batch(make_outgoing(2))
    transport.close()
    assert [r.status for r in results] == ["failed-temporary"] * 2
    assert len(sleeps) == 1


def test_an_account_problem_stops_the_run_instead_of_failing_everyone(
    postmark, postmark_server, make_outgoing
) -> None:
    postmark_server.respond(
        422, body={"ErrorCode": 400, "Message": "The 'From' address is not a Sender Signature."}
    )
    with pytest.raises(DeliveryError, match="sender signature"):
        postmark.send_batch(make_outgoing(2))


def test_a_wrong_token_stops_the_run_and_the_token_is_never_shown(
    postmark_server, make_outgoing
) -> None:
    settings = postmark_server.provider_settings()
    from newsletter.core.settings import Secret
    from newsletter.transports.provider_settings import ProviderSettings

    wrong = "pm-WRONG-token-0000-secret"
    transport = PostmarkTransport(ProviderSettings("postmark", settings.base_url, Secret(wrong)))
    with pytest.raises(DeliveryError) as caught:
        transport.send_batch(make_outgoing(2))
    printed = "".join(traceback.format_exception(caught.value))
    assert "401" in printed and "NEWSLETTER_POSTMARK_TOKEN" in printed
    assert wrong not in printed and POSTMARK_TOKEN not in printed
    transport.close()


def test_a_fatal_error_mid_send_keeps_the_batches_already_sent(
    postmark, postmark_server, make_outgoing
) -> None:
    messages = make_outgoing(700, shared=True)
    postmark_server.respond(200, times=1)  # first batch as normal
    postmark_server.respond(401, body={"ErrorCode": 10, "Message": "Token revoked"})
    results = postmark.send_batch(messages)
    assert [r.status for r in results[:500]] == ["sent"] * 500
    assert {r.status for r in results[500:]} == {"failed-temporary"}
    with pytest.raises(DeliveryError, match="refused our credentials"):
        postmark.send_batch(messages[500:])


def test_secrets_never_appear_in_results_or_errors(
    postmark, postmark_server, make_outgoing
) -> None:
    postmark_server.fail_address("reader1@example.org", 406, message=f"echo {POSTMARK_TOKEN}")
    texts = [r.detail for r in postmark.send_batch(make_outgoing(2))]
    postmark_server.respond(422, body={"ErrorCode": 300, "Message": f"bad {POSTMARK_TOKEN}"})
    with pytest.raises(DeliveryError) as caught:
        postmark.send_batch(make_outgoing(2))
    texts.append("".join(traceback.format_exception(caught.value)))
    assert any("********" in t for t in texts)
    assert not any(POSTMARK_TOKEN in t for t in texts)


def test_open_transport_reads_url_and_token_from_the_environment(
    project_dir, postmark_server, monkeypatch, make_outgoing
) -> None:
    postmark_server.configure(monkeypatch)
    transport = open_transport(open_project(project_dir).settings)
    assert transport.name == "postmark" and transport.batch_size == 500
    assert transport.send_batch(make_outgoing(1))[0].ok
    transport.close()


def test_postmark_without_a_token_is_a_clear_config_error(project_dir, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "postmark")
    with pytest.raises(ConfigError, match="NEWSLETTER_POSTMARK_TOKEN"):
        open_transport(open_project(project_dir).settings)


def test_retry_after_accepts_seconds_an_http_date_and_reset_headers() -> None:
    now = datetime(2023, 5, 18, 9, 0, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "12"}, now) == 12.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds({"Retry-After": later}, now) == 90.0
    assert retry_after_seconds({"X-RateLimit-Reset": "5"}, now) == 5.0
    assert retry_after_seconds({"X-RateLimit-Reset": str(int(now.timestamp()) + 30)}, now) == 30.0
    assert retry_after_seconds({}, now) is None
