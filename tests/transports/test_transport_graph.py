"""The Microsoft Graph transport against local HTTPS stand-ins for Graph and the identity platform.

The Graph fake decodes each request's base64 MIME, parses it and checks it is
the message we built (see tests/support/microsoft.py).
"""

from __future__ import annotations

import traceback
from email.utils import parseaddr

import pytest

from newsletter.core.errors import DeliveryError
from newsletter.transports.graph.send import GraphTransport
from newsletter.transports.http import RetryPolicy
from newsletter.transports.microsoft.identity import GRAPH_SCOPE, TokenProvider
from tests.support.microsoft import CLIENT_SECRET, MAILBOX


@pytest.fixture
def graph_tokens(identity, ms_clock, monkeypatch):
    identity.trust(monkeypatch)
    return TokenProvider(identity.identity(), GRAPH_SCOPE, clock=ms_clock)


@pytest.fixture
def graph_transport(graph, graph_tokens, ms_clock):
    built: list[GraphTransport] = []

    def build(**kwargs) -> GraphTransport:
        kwargs.setdefault("retry", RetryPolicy(attempts=4, base_delay=1.0, max_wait=60.0))
        transport = GraphTransport(
            MAILBOX, graph_tokens, base_url=graph.url, clock=ms_clock, **kwargs
        )
        built.append(transport)
        return transport

    yield build
    for transport in built:
        transport.close()


def test_each_message_is_posted_whole_as_base64_mime_and_accepted(
    graph_transport, graph, identity, make_outgoing
) -> None:
    messages = make_outgoing(["jo@example.org", "sam@example.com", "ali@example.org"])
    results = graph_transport().send_batch(messages)

    assert [r.status for r in results] == ["sent"] * 3
    assert all(r.provider_id for r in results)  # Graph's request-id, to trace a message
    assert graph.recipients() == [m.recipient for m in messages]
    for outgoing, received in zip(messages, graph.accepted, strict=True):
        assert received["Message-ID"] == outgoing.message_id
        for header in ("From", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
            assert received[header] == outgoing.message[header], header
        assert "Dear Reader" in received.get_body(("plain",)).get_content()
    assert len(identity.tokens_for(GRAPH_SCOPE)) == 1  # one app-only token for the batch


def test_throttling_waits_as_long_as_graph_asks_then_sends(
    graph_transport, graph, ms_clock, make_outgoing
) -> None:
    graph.respond(429, headers={"Retry-After": "7"})
    graph.respond(503, headers={"Retry-After": "3"})

    results = graph_transport().send_batch(make_outgoing(2))

    assert [r.status for r in results] == ["sent", "sent"]
    assert ms_clock.sleeps == [7.0, 3.0]
    assert len(graph.accepted) == 2


def test_a_wait_longer_than_we_sleep_hands_the_rest_back_with_the_wait(
    graph_transport, graph, ms_clock, make_outgoing
) -> None:
    messages = make_outgoing(3)
    graph.respond(202)
    graph.respond(429, headers={"Retry-After": "600"})

    results = graph_transport().send_batch(messages)

    assert [r.status for r in results] == ["sent", "failed-temporary", "failed-temporary"]
    assert [r.retry_after for r in results[1:]] == [600.0, 600.0]
    assert "HTTP 429" in results[1].detail
    assert ms_clock.sleeps == []  # the dispatcher decides how to wait that long
    assert graph.recipients() == [messages[0].recipient]


def test_a_long_rate_limited_send_refreshes_the_token_before_it_expires(
    graph_transport, graph, identity, ms_clock, make_outgoing
) -> None:
    identity.expires_in = 900
    graph.respond(429, headers={"Retry-After": "700"}, times=1)
    transport = graph_transport(retry=RetryPolicy(attempts=3, max_wait=1000.0))

    first = transport.send_batch(make_outgoing(["a@example.org"]))  # waits 700 s, then sends
    second = transport.send_batch(make_outgoing(["b@example.org", "c@example.org"]))

    assert [r.status for r in first + second] == ["sent"] * 3
    assert ms_clock.sleeps == [700.0]
    assert len(identity.tokens_for(GRAPH_SCOPE)) == 2  # fetched again inside the margin
    assert graph.rejected_tokens == 0  # so Graph never saw an expired token


def test_a_token_graph_refuses_is_replaced_once(
    graph_transport, graph, graph_tokens, identity, make_outgoing
) -> None:
    graph_tokens.token()
    identity.revoke_all()

    results = graph_transport().send_batch(make_outgoing(2))

    assert [r.status for r in results] == ["sent", "sent"]
    assert graph.rejected_tokens == 1
    assert graph_tokens.tokens_issued == 2


def test_missing_mail_send_permission_stops_the_run_with_one_clear_line(
    graph_transport, graph, identity, make_outgoing
) -> None:
    graph.deny_mail_send()
    with pytest.raises(DeliveryError) as caught:
        graph_transport().send_batch(make_outgoing(3))

    message = str(caught.value)
    assert "\n" not in message
    assert "ErrorAccessDenied" in message
    assert "application permission `Mail.Send`" in message and "admin consent" in message
    printed = "".join(traceback.format_exception(caught.value))
    for secret in [CLIENT_SECRET, *identity.tokens_for(GRAPH_SCOPE)]:
        assert secret not in printed
    assert graph.accepted == []


def test_a_refusal_after_some_were_sent_keeps_their_results_and_stops_next_batch(
    graph_transport, graph, make_outgoing
) -> None:
    messages = make_outgoing(3)
    graph.respond(202)
    graph.respond(
        403,
        {"error": {"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials."}},
    )
    transport = graph_transport()

    results = transport.send_batch(messages)

    assert [r.status for r in results] == ["sent", "failed-temporary", "failed-temporary"]
    with pytest.raises(DeliveryError, match=r"Mail\.Send"):
        transport.send_batch(messages[1:])


def test_an_unknown_sender_mailbox_is_named(graph, graph_tokens, ms_clock, make_outgoing) -> None:
    transport = GraphTransport(
        "nobody@example.org", graph_tokens, base_url=graph.url, clock=ms_clock
    )
    with pytest.raises(DeliveryError, match=r"no mailbox nobody@example\.org"):
        transport.send_batch(make_outgoing(1))
    transport.close()


def test_a_refused_recipient_is_permanent_and_the_rest_are_sent(
    graph_transport, graph, make_outgoing
) -> None:
    graph.respond(202)
    graph.respond(
        400,
        {
            "error": {
                "code": "ErrorInvalidRecipients",
                "message": "At least one recipient is not valid.",
            }
        },
    )
    results = graph_transport().send_batch(make_outgoing(3))
    assert [r.status for r in results] == ["sent", "failed-permanent", "sent"]
    assert "ErrorInvalidRecipients" in results[1].detail


def test_graph_delivers_to_the_envelope_recipient_even_when_to_differs(
    graph_transport, graph, make_outgoing
) -> None:
    messages = make_outgoing(["first@example.org", "second@example.org"], shared=True)
    assert parseaddr(str(messages[1].message["To"]))[1] == "first@example.org"

    results = graph_transport().send_batch(messages)

    assert [r.status for r in results] == ["sent", "sent"]
    assert graph.recipients() == ["first@example.org", "second@example.org"]


def test_an_unreachable_graph_is_retried_then_left_temporary(
    graph_transport, graph, ms_clock, make_outgoing
) -> None:
    transport = graph_transport(retry=RetryPolicy(attempts=3, base_delay=2.0))
    graph.stop()
    results = transport.send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["failed-temporary", "failed-temporary"]
    assert "could not be reached" in results[0].detail
    assert ms_clock.sleeps == [2.0, 4.0]


def test_no_secret_or_token_reaches_the_logs_even_at_debug_level(
    graph_transport, graph, identity, make_outgoing, caplog
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    assert graph_transport().send_batch(make_outgoing(1))[0].ok
    assert "/sendMail" in caplog.text  # the debug logs really were captured
    for secret in [CLIENT_SECRET, *identity.tokens_for(GRAPH_SCOPE)]:
        assert secret not in caplog.text


def test_a_message_taken_but_never_answered_is_unknown_and_posted_once(
    graph_transport, graph, make_outgoing
) -> None:
    # Graph stores the message, then its answer never arrives within our timeout:
    # it may well have been sent, so posting it again would mail the person twice.
    graph.answer_late(2.0)
    [result] = graph_transport(timeout=0.5).send_batch(make_outgoing(["jo@example.org"]))
    assert result.status == "unknown"
    assert "may have been delivered" in result.detail
    assert graph.recipients() == ["jo@example.org"]  # one POST, never retried


def test_a_failing_identity_platform_hands_everyone_back_naming_its_settings(
    graph_transport, graph, identity, make_outgoing
) -> None:
    identity.respond(500, {"error": "server_error", "error_description": identity.client_secret})
    results = graph_transport().send_batch(make_outgoing(2))
    assert [r.status for r in results] == ["failed-temporary"] * 2
    detail = results[0].detail
    assert "identity platform" in detail and "NEWSLETTER_OAUTH_AUTHORITY" in detail
    assert "NEWSLETTER_GRAPH_URL" not in detail and CLIENT_SECRET not in detail
    assert graph.accepted == []
