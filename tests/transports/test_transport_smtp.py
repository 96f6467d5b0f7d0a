"""The SMTP transport against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import traceback

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.core.errors import DeliveryError
from newsletter.core.project import Project
from newsletter.transports.lookup import open_transport
from newsletter.transports.smtp.send import SmtpTransport
from tests.support.tls import ThrowawayCA

SENDER = "newsupdate@mars-board.example.org"
PASSWORD = "s3cret-Smtp-Passw0rd!"


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def smtp_server(request, smtp_server_factory):
    """Each test here against a server that offers PIPELINING and one that does not."""
    server = smtp_server_factory()
    server.pipelining = request.param
    return server


@pytest.fixture
def smtp_transport():
    """Build SmtpTransports that are closed after the test (no socket left open)."""
    opened: list[SmtpTransport] = []

    def build(settings, **kwargs) -> SmtpTransport:
        transport = SmtpTransport(settings, SENDER, **kwargs)
        opened.append(transport)
        return transport

    yield build
    for transport in opened:
        transport.close()


def test_fifty_messages_go_over_one_connection_with_headers_and_both_parts(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(50)
    transport = smtp_transport(smtp_server.settings())

    results = transport.send_batch(messages)
    transport.close()

    assert [r.status for r in results] == ["sent"] * 50
    assert results[0].provider_id == "TEST000001"  # the relay's queue id, to trace a message
    assert smtp_server.sessions == 1
    assert transport.connections_opened == 1
    received = smtp_server.by_recipient()
    assert sorted(received) == sorted(m.recipient for m in messages)
    for outgoing in messages:
        [got] = received[outgoing.recipient]
        assert got.mail_from == SENDER
        assert got.rcpt_tos == (outgoing.recipient,)
        msg = got.message
        assert msg["Message-ID"] == outgoing.message_id
        for header in ("From", "To", "Subject", "Date", "Reply-To", "List-Id", "List-Unsubscribe"):
            assert msg[header] == outgoing.message[header], header
        assert msg.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert "Dear Reader Nº" in msg.get_body(("plain",)).get_content()
        assert "<p>Dear Reader Nº" in msg.get_body(("html",)).get_content()


def test_451_is_temporary_550_permanent_and_the_rest_still_delivered(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(
        ["a@example.org", "busy@example.org", "gone@example.org", "b@example.org"]
    )
    smtp_server.fail("busy@example.org", 451)
    smtp_server.fail("gone@example.org", 550)
    transport = smtp_transport(smtp_server.settings())

    results = transport.send_batch(messages)

    assert [(r.recipient, r.status) for r in results] == [
        ("a@example.org", "sent"),
        ("busy@example.org", "failed-temporary"),
        ("gone@example.org", "failed-permanent"),
        ("b@example.org", "sent"),
    ]
    assert results[1].detail.startswith("451 4.3.0")
    assert results[2].detail.startswith("550 5.1.1")
    assert "RCPT" in results[2].detail
    assert smtp_server.recipients() == ["a@example.org", "b@example.org"]
    assert smtp_server.sessions == 1  # refusals do not cost a reconnection

    # The 451 clears up on a later attempt (the dispatcher retries temporaries).
    smtp_server.reset()
    smtp_server.fail("busy@example.org", 451, times=1)
    assert transport.send_batch([messages[1]])[0].status == "failed-temporary"
    assert transport.send_batch([messages[1]])[0].status == "sent"
    assert smtp_server.recipients() == ["busy@example.org"]


def test_a_refusal_at_the_end_of_data_about_the_recipient_is_theirs(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(["full@example.org", "later@example.org", "ok@example.org"])
    smtp_server.fail("full@example.org", 552, stage="DATA", text="5.2.2 Mailbox full")
    smtp_server.fail("later@example.org", 451, stage="DATA")
    results = smtp_transport(smtp_server.settings()).send_batch(messages)
    assert [r.status for r in results] == ["failed-permanent", "failed-temporary", "sent"]
    assert "DATA" in results[0].detail
    assert smtp_server.recipients() == ["ok@example.org"]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (550, "5.7.1 Message rejected as spam by Content Filtering"),
        (552, "5.3.4 Message size exceeds fixed maximum message size"),
        (554, "Transaction failed"),
    ],
)
def test_a_refusal_of_the_message_itself_stops_instead_of_failing_the_recipient(
    smtp_transport, smtp_server, make_outgoing, code, text
) -> None:
    messages = make_outgoing(4)
    smtp_server.fail("*", code, stage="DATA", text=text)
    transport = smtp_transport(smtp_server.settings())
    with pytest.raises(DeliveryError, match="refused the message itself") as caught:
        transport.send_batch(messages)
    assert text in str(caught.value) and "nobody was marked as failed" in str(caught.value)
    assert smtp_server.recipients() == []


def test_a_refusal_of_the_message_after_others_went_keeps_their_results(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(4)
    smtp_server.fail("reader3@example.org", 550, stage="DATA", text="5.7.1 Content rejected")
    transport = smtp_transport(smtp_server.settings())
    results = transport.send_batch(messages)
    assert [(r.status, r.halted) for r in results] == [
        ("sent", False),
        ("sent", False),
        ("failed-temporary", True),
        ("failed-temporary", True),
    ]
    assert "5.7.1 Content rejected" in results[2].detail
    with pytest.raises(DeliveryError, match="refused the message itself"):
        transport.send_batch(messages[3:])
    assert smtp_server.recipients() == ["reader1@example.org", "reader2@example.org"]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (550, "5.1.1 <reader2@example.org>: Recipient address rejected: User unknown"),
        (550, "5.4.1 Recipient address rejected: Access denied"),
        (553, "mailbox name not allowed"),
        (550, "5.2.1 Mailbox disabled, not accepting messages"),
    ],
)
def test_refusals_about_the_recipient_at_rcpt_are_theirs(
    smtp_transport, smtp_server, make_outgoing, code, text
) -> None:
    messages = make_outgoing(3)
    smtp_server.fail("reader2@example.org", code, text=text)
    results = smtp_transport(smtp_server.settings()).send_batch(messages)
    assert [r.status for r in results] == ["sent", "failed-permanent", "sent"]


def test_relaying_denied_at_rcpt_stops_instead_of_failing_everyone(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    smtp_server.fail("*", 554, text="5.7.1 <reader1@example.org>: Relay access denied")
    with pytest.raises(DeliveryError, match="Relay access denied"):
        smtp_transport(smtp_server.settings()).send_batch(make_outgoing(3))


def test_a_connection_dropped_before_the_message_is_reconnected_and_delivered_once(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(8)
    smtp_server.drop_connection_after(3, stage="RCPT")
    transport = smtp_transport(smtp_server.settings())

    results = transport.send_batch(messages)

    assert [r.status for r in results] == ["sent"] * 8
    assert sorted(smtp_server.recipients()) == sorted(m.recipient for m in messages)
    assert len(smtp_server.recipients()) == 8
    assert transport.connections_opened == 2


def test_a_connection_dropped_after_the_end_of_data_is_unknown_and_not_sent_again(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(6)
    smtp_server.store_then_drop("reader3@example.org")
    transport = smtp_transport(smtp_server.settings())

    results = transport.send_batch(messages)

    assert [r.status for r in results] == ["sent", "sent", "unknown", "sent", "sent", "sent"]
    assert "may have been delivered" in results[2].detail
    # The relay kept it: one copy, not one per reconnection.
    assert smtp_server.recipients().count("reader3@example.org") == 1
    assert len(smtp_server.recipients()) == 6
    assert transport.connections_opened == 2


def test_a_final_reply_later_than_the_timeout_is_unknown_and_not_sent_again(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(4)
    smtp_server.slow_final_reply("reader2@example.org", 2.0)
    transport = smtp_transport(smtp_server.settings(timeout_seconds=0.3))

    results = transport.send_batch(messages)

    assert [r.status for r in results] == ["sent", "unknown", "sent", "sent"]
    assert "no answer within 0.3 s" in results[1].detail
    assert smtp_server.recipients().count("reader2@example.org") == 1


def test_421_closes_the_session_and_the_message_is_retried_on_a_new_one(
    smtp_transport, smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(5)
    smtp_server.reply_421_on(2)
    transport = smtp_transport(smtp_server.settings())

    results = transport.send_batch(messages)

    assert [r.status for r in results] == ["sent"] * 5
    assert smtp_server.recipients() == [m.recipient for m in messages]
    assert transport.connections_opened == 2
    assert smtp_server.sessions == 2


def test_unreachable_server_gives_temporary_results_without_raising(
    trusted_ca, smtp_transport, make_outgoing, smtp_server
) -> None:
    settings = smtp_server.settings()
    smtp_server.stop()
    results = smtp_transport(settings, ssl_context=trusted_ca.client_context()).send_batch(
        make_outgoing(3)
    )
    assert [r.status for r in results] == ["failed-temporary"] * 3
    assert "cannot connect" in results[0].detail


def test_open_transport_uses_the_smtp_environment_settings(
    project_dir, smtp_server, monkeypatch, make_outgoing
) -> None:
    from newsletter.core.project import open_project

    smtp_server.configure(monkeypatch)
    transport = open_transport(open_project(project_dir).settings)
    assert transport.name == "smtp"
    assert [r.status for r in transport.send_batch(make_outgoing(2))] == ["sent", "sent"]
    transport.close()
    transport.close()  # safe twice


# -- TLS: certificate verification is on --------------------------------------


@pytest.fixture
def trusted_ca(local_ca: ThrowawayCA) -> ThrowawayCA:
    return local_ca  # tests/support/tls.py: the session's throwaway CA


def test_starttls_refuses_an_untrusted_certificate(
    smtp_transport, smtp_server_factory, trusted_ca, make_outgoing
) -> None:
    server = smtp_server_factory(tls_context=trusted_ca.server_context(), require_starttls=True)
    transport = smtp_transport(server.settings())  # the system's trust store only
    with pytest.raises(DeliveryError, match="certificate that cannot be trusted"):
        transport.send_batch(make_outgoing(2))
    assert server.messages == []


def test_starttls_delivers_when_the_certificate_is_trusted(
    smtp_transport, smtp_server_factory, trusted_ca, make_outgoing
) -> None:
    server = smtp_server_factory(tls_context=trusted_ca.server_context(), require_starttls=True)
    assert server.security == "starttls"
    transport = smtp_transport(server.settings(), ssl_context=trusted_ca.client_context())
    results = transport.send_batch(make_outgoing(3))
    transport.close()
    assert [r.status for r in results] == ["sent"] * 3
    assert len(server.messages) == 3  # require_starttls: nothing is accepted without TLS


def test_starttls_refuses_a_server_that_does_not_offer_it(
    trusted_ca, smtp_transport, smtp_server, make_outgoing
) -> None:
    settings = smtp_server.settings(security="starttls")
    with pytest.raises(DeliveryError, match="STARTTLS") as caught:
        smtp_transport(settings, ssl_context=trusted_ca.client_context()).send_batch(
            make_outgoing(1)
        )
    assert smtp_server.messages == []
    # Both ways out, each with when it fits, in the words of the settings file.
    message = str(caught.value)
    assert "`security: ssl`" in message and "port 465" in message
    assert "`security: none`" in message and "IT team" in message
    assert message.index("`security: ssl`") < message.index("`security: none`")


def test_implicit_tls_verifies_and_delivers(
    smtp_transport, smtp_server_factory, trusted_ca, make_outgoing
) -> None:
    server = smtp_server_factory(ssl_context=trusted_ca.server_context())
    assert server.security == "ssl"
    with pytest.raises(DeliveryError, match="cannot be trusted"):
        smtp_transport(server.settings()).send_batch(make_outgoing(1))
    trusted = smtp_transport(server.settings(), ssl_context=trusted_ca.client_context())
    assert trusted.send_batch(make_outgoing(1))[0].ok
    assert len(server.messages) == 1


# -- login, and the password never showing ------------------------------------


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"newsletter", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


def test_login_with_the_right_password_sends(
    trusted_ca, smtp_transport, smtp_server_factory, make_outgoing
) -> None:
    server = smtp_server_factory(
        authenticator=_authenticator, auth_required=True, tls_context=trusted_ca.server_context()
    )
    settings = server.settings(username="newsletter", password=PASSWORD)
    assert (
        smtp_transport(settings, ssl_context=trusted_ca.client_context())
        .send_batch(make_outgoing(2))[1]
        .ok
    )
    assert len(server.messages) == 2


def test_wrong_password_stops_the_run_without_showing_the_password(
    trusted_ca, smtp_transport, smtp_server_factory, make_outgoing
) -> None:
    server = smtp_server_factory(
        authenticator=_authenticator, auth_required=True, tls_context=trusted_ca.server_context()
    )
    settings = server.settings(username="newsletter", password=PASSWORD + "-wrong")
    with pytest.raises(DeliveryError) as caught:
        smtp_transport(settings, ssl_context=trusted_ca.client_context()).send_batch(
            make_outgoing(2)
        )
    text = str(caught.value) + repr(caught.value) + repr(settings)
    assert "refused the username and password" in text
    assert "NEWSLETTER_SMTP_PASSWORD" in text
    assert PASSWORD not in text
    printed = "".join(traceback.format_exception(caught.value))  # what the CLI could show
    assert PASSWORD not in printed
    assert PASSWORD not in repr(caught.value.__context__)
    assert server.messages == []


def test_a_server_echoing_the_password_is_scrubbed_from_results(
    trusted_ca, smtp_transport, smtp_server_factory, make_outgoing
) -> None:
    import base64

    server = smtp_server_factory(
        authenticator=_authenticator, auth_required=True, tls_context=trusted_ca.server_context()
    )
    leaked = base64.b64encode(f"\0newsletter\0{PASSWORD}".encode()).decode()
    server.fail("reader1@example.org", 550, text=f"5.1.1 no such user {PASSWORD} {leaked}")
    settings = server.settings(username="newsletter", password=PASSWORD)
    [result] = smtp_transport(settings, ssl_context=trusted_ca.client_context()).send_batch(
        make_outgoing(1)
    )
    assert result.status == "failed-permanent"
    assert PASSWORD not in result.detail and leaked not in result.detail
    assert "********" in result.detail


def test_a_deferred_fatal_error_keeps_the_results_already_sent(
    smtp_transport, smtp_server_factory, make_outgoing, project: Project
) -> None:
    """A sender refused mid-batch: earlier results are returned, the error comes next batch."""
    server = smtp_server_factory()
    messages = make_outgoing(3)
    transport = smtp_transport(server.settings())

    async def refuse_sender_after_first(srv, session, envelope, address, options):
        if server.messages:
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        return "250 OK"

    server.handle_MAIL = refuse_sender_after_first
    results = transport.send_batch(messages)
    assert [r.status for r in results] == ["sent", "failed-temporary", "failed-temporary"]
    assert "refused the sender address" in results[1].detail
    with pytest.raises(DeliveryError, match="refused the sender address"):
        transport.send_batch(messages[1:])
