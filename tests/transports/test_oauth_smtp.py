"""Microsoft 365 OAuth2: app-only tokens from a local identity platform, and SMTP with XOAUTH2.

Everything runs against real local servers: an HTTPS identity platform that
issues and expires tokens on a shared fake clock, and aiosmtpd checking the
XOAUTH2 string and the token. See tests/support/microsoft.py.
"""

from __future__ import annotations

import logging
import traceback
import urllib.parse

import pytest
from aiosmtpd.smtp import AuthResult

from newsletter.core.errors import ConfigError, DeliveryError, TokenRefused, TokenUnavailable
from newsletter.core.settings import Secret, load_settings, read_settings
from newsletter.transports.microsoft.identity import (
    GRAPH_SCOPE,
    SMTP_SCOPE,
    MicrosoftIdentity,
    TokenProvider,
)
from newsletter.transports.smtp.send import SmtpTransport
from tests.support.microsoft import CLIENT_ID, CLIENT_SECRET, MAILBOX, TENANT_ID, write_certificate

PASSWORD = "s3cret-Smtp-Passw0rd!"


@pytest.fixture
def smtp_tokens(identity, ms_clock, monkeypatch):
    identity.trust(monkeypatch)
    return TokenProvider(identity.identity(), SMTP_SCOPE, clock=ms_clock)


@pytest.fixture
def oauth_transport(xoauth2_smtp, smtp_tokens):
    transports: list[SmtpTransport] = []

    def build(**kwargs) -> SmtpTransport:
        transport = SmtpTransport(
            xoauth2_smtp.settings(username=MAILBOX), MAILBOX, tokens=smtp_tokens, **kwargs
        )
        transports.append(transport)
        return transport

    yield build
    for transport in transports:
        transport.close()


# -- the token provider -------------------------------------------------------


def test_a_token_is_reused_until_it_nears_expiry_then_a_new_one_is_fetched(
    identity, ms_clock, monkeypatch
) -> None:
    identity.trust(monkeypatch)
    identity.expires_in = 3600
    tokens = TokenProvider(identity.identity(), GRAPH_SCOPE, clock=ms_clock)

    first = tokens.token()
    assert tokens.token() is first
    assert identity.valid(first.value, GRAPH_SCOPE)
    assert identity.token_requests == [{"scope": GRAPH_SCOPE}]

    ms_clock.advance(3600 - 301)  # still five minutes and a second to go
    assert tokens.token() is first
    ms_clock.advance(2)  # inside the refresh margin: fetched again before it expires
    second = tokens.token()
    assert second.value != first.value
    assert identity.valid(second.value, GRAPH_SCOPE)
    assert tokens.tokens_issued == 2
    assert first.value not in repr(first) and first.value not in repr(tokens)


def test_the_client_secret_and_tokens_are_scrubbed_from_any_text(
    identity, ms_clock, monkeypatch
) -> None:
    import base64

    identity.trust(monkeypatch)
    tokens = TokenProvider(identity.identity(), SMTP_SCOPE, clock=ms_clock)
    token = tokens.token().value
    leaked = f"{CLIENT_SECRET} {token} {base64.b64encode(token.encode()).decode()}"
    scrubbed = tokens.scrub(leaked)
    assert CLIENT_SECRET not in scrubbed and token not in scrubbed
    assert scrubbed.count("********") == 3


def test_a_wrong_client_secret_stops_with_the_setting_to_check_and_never_the_secret(
    identity, ms_clock, monkeypatch
) -> None:
    identity.trust(monkeypatch)
    wrong = "Wr0ng~client-secret-value.123"
    tokens = TokenProvider(
        identity.identity(client_secret=Secret(wrong)), SMTP_SCOPE, clock=ms_clock
    )
    with pytest.raises(TokenRefused) as caught:
        tokens.token()
    text = "".join(traceback.format_exception(caught.value))
    assert "invalid_client" in text and "AADSTS7000215" in text
    assert "NEWSLETTER_OAUTH_CLIENT_SECRET" in text
    assert wrong not in text and CLIENT_SECRET not in text
    assert "Trace ID" not in str(caught.value)  # one clear line, not Microsoft's trace noise
    assert isinstance(caught.value, DeliveryError)  # stops the run


def test_an_unknown_application_and_an_unknown_tenant_name_their_settings(
    identity, ms_clock, monkeypatch
) -> None:
    identity.trust(monkeypatch)
    stranger = TokenProvider(
        identity.identity(client_id="00000000-1111-2222-3333-444444444444"),
        SMTP_SCOPE,
        clock=ms_clock,
    )
    with pytest.raises(TokenRefused, match="NEWSLETTER_OAUTH_CLIENT_ID"):
        stranger.token()
    elsewhere = TokenProvider(
        identity.identity(tenant_id="contoso.onmicrosoft.example"), SMTP_SCOPE, clock=ms_clock
    )
    with pytest.raises(TokenRefused, match="NEWSLETTER_OAUTH_TENANT_ID") as caught:
        elsewhere.token()
    assert "contoso.onmicrosoft.example" in str(caught.value)


def test_an_untrusted_identity_certificate_is_refused_with_how_to_trust_it(
    identity, ms_clock, monkeypatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    tokens = TokenProvider(identity.identity(), SMTP_SCOPE, clock=ms_clock)
    with pytest.raises(TokenRefused, match=r"cannot be trusted.*REQUESTS_CA_BUNDLE"):
        tokens.token()
    assert identity.issued == []


def test_an_unreachable_identity_platform_is_temporary(identity, ms_clock, monkeypatch) -> None:
    identity.trust(monkeypatch)
    tokens = TokenProvider(identity.identity(), SMTP_SCOPE, clock=ms_clock)
    identity.stop()
    with pytest.raises(TokenUnavailable, match="could not be reached"):
        tokens.token()


def test_a_busy_identity_platform_is_temporary(identity, ms_clock, monkeypatch) -> None:
    identity.trust(monkeypatch)
    identity.respond(
        503,
        {"error": "temporarily_unavailable", "error_description": "AADSTS50196: busy"},
    )
    tokens = TokenProvider(identity.identity(), SMTP_SCOPE, clock=ms_clock)
    with pytest.raises(TokenUnavailable):
        tokens.token()


def test_a_token_endpoint_echoing_the_secret_never_gets_it_printed(
    identity, ms_clock, monkeypatch
) -> None:
    """Whatever the platform says back, in `error` as it is or URL-encoded in the description."""
    identity.trust(monkeypatch)
    identity.client_secret = "Qx8~echo me/back+now"  # characters that URL-encoding changes
    encoded = urllib.parse.quote_plus(identity.client_secret)
    identity.respond(
        400,
        {
            "error": identity.client_secret,
            "error_description": f"AADSTS7000215: bad client_secret={encoded} sent",
        },
    )
    tokens = TokenProvider(identity.identity(), SMTP_SCOPE, clock=ms_clock)
    with pytest.raises(TokenRefused) as caught:
        tokens.token()
    text = "".join(traceback.format_exception(caught.value))
    assert "AADSTS7000215" in text  # the platform's reason is still there for the reader
    assert identity.client_secret not in text and encoded not in text
    assert urllib.parse.quote(identity.client_secret, safe="") not in text


def test_an_identity_platform_answering_500_is_temporary_and_names_no_secret(
    identity, ms_clock, monkeypatch
) -> None:
    identity.trust(monkeypatch)
    identity.respond(500, {"error": "server_error", "error_description": identity.client_secret})
    tokens = TokenProvider(identity.identity(), SMTP_SCOPE, clock=ms_clock)
    with pytest.raises(TokenUnavailable) as caught:
        tokens.token()
    assert "identity platform" in str(caught.value)
    assert CLIENT_SECRET not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize("failure", ["500", "unreachable"])
def test_a_failing_identity_platform_at_the_start_of_a_run_names_its_settings(
    oauth_transport, identity, failure
) -> None:
    """Not NEWSLETTER_SMTP_HOST: the relay was never the problem."""
    if failure == "500":
        identity.respond(500, {"error": "server_error", "error_description": "AADSTS90033"})
    else:
        identity.stop()
    with pytest.raises(ConfigError) as caught:
        oauth_transport().connect()
    message = str(caught.value)
    assert "Microsoft identity platform" in message
    for name in (
        "NEWSLETTER_OAUTH_TENANT_ID",
        "NEWSLETTER_OAUTH_CLIENT_ID",
        "NEWSLETTER_OAUTH_CLIENT_SECRET",
        "NEWSLETTER_OAUTH_AUTHORITY",
    ):
        assert name in message
    assert "NEWSLETTER_SMTP_HOST" not in message and CLIENT_SECRET not in message


def test_a_certificate_credential_signs_an_assertion_the_platform_verifies(
    identity, ms_clock, monkeypatch, tmp_path
) -> None:
    identity.trust(monkeypatch)
    path, certificate = write_certificate(tmp_path)
    identity.certificate_pem = certificate
    tokens = TokenProvider(
        identity.identity(client_secret=None, certificate_path=path), SMTP_SCOPE, clock=ms_clock
    )
    assert identity.valid(tokens.token().value, SMTP_SCOPE)


def test_a_certificate_file_without_its_key_is_named_before_anything_is_sent(
    identity, ms_clock, monkeypatch, tmp_path
) -> None:
    identity.trust(monkeypatch)
    _, certificate = write_certificate(tmp_path)
    only_cert = tmp_path / "only-cert.pem"
    only_cert.write_bytes(certificate)
    missing = tmp_path / "missing.pem"
    for path, problem in ((only_cert, "must hold the private key"), (missing, "cannot be read")):
        tokens = TokenProvider(
            identity.identity(client_secret=None, certificate_path=path),
            SMTP_SCOPE,
            clock=ms_clock,
        )
        with pytest.raises(ConfigError, match=problem) as caught:
            tokens.token()
        assert "NEWSLETTER_OAUTH_CERTIFICATE_PATH" in str(caught.value)
    assert identity.token_requests == []


def test_the_app_registration_is_read_from_the_environment_through_the_settings(
    project_dir,
) -> None:
    env = {
        "NEWSLETTER_OAUTH_TENANT_ID": TENANT_ID,
        "NEWSLETTER_OAUTH_CLIENT_ID": CLIENT_ID,
        "NEWSLETTER_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
    }
    settings = load_settings(project_dir, env)
    identity = MicrosoftIdentity.from_settings(settings.oauth)
    assert identity.authority == f"https://login.microsoftonline.com/{TENANT_ID}"
    assert not identity.custom_authority
    assert CLIENT_SECRET not in repr(identity) and CLIENT_SECRET not in repr(settings)

    partial = load_settings(project_dir, {"NEWSLETTER_OAUTH_TENANT_ID": TENANT_ID})
    with pytest.raises(ConfigError) as caught:
        MicrosoftIdentity.from_settings(partial.oauth)
    assert "NEWSLETTER_OAUTH_CLIENT_ID" in str(caught.value)
    assert "NEWSLETTER_OAUTH_CLIENT_SECRET" in str(caught.value)

    _, problems = read_settings(
        project_dir, {**env, "NEWSLETTER_OAUTH_AUTHORITY": "http://login.example.org"}
    )
    [refused] = [p for p in problems if p.is_error]
    assert refused.message.startswith("NEWSLETTER_OAUTH_AUTHORITY ") and "https" in refused.message


def test_the_app_registration_cannot_be_written_in_the_settings_file(project_dir) -> None:
    path = project_dir / "newsletter.yaml"
    path.write_text(
        path.read_text(encoding="utf-8")
        + f"oauth:\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n",
        encoding="utf-8",
    )
    _, problems = read_settings(project_dir, {})
    messages = [p.message for p in problems if p.is_error]
    assert any("NEWSLETTER_OAUTH_CLIENT_ID" in m for m in messages)
    assert any(
        "`oauth.client_secret` looks like a secret" in m and "NEWSLETTER_OAUTH_CLIENT_SECRET" in m
        for m in messages
    )


# -- SMTP with XOAUTH2 ----------------------------------------------------------


def test_xoauth2_logs_in_as_the_mailbox_with_an_outlook_token_and_delivers(
    oauth_transport, xoauth2_smtp, identity, make_outgoing
) -> None:
    messages = make_outgoing(3)
    results = oauth_transport().send_batch(messages)

    assert [r.status for r in results] == ["sent"] * 3
    assert xoauth2_smtp.recipients() == [m.recipient for m in messages]
    [token] = xoauth2_smtp.checks.auths  # one login for the whole batch
    assert identity.tokens_for(SMTP_SCOPE) == [token]
    assert identity.token_requests == [{"scope": SMTP_SCOPE}]


def test_a_long_send_gets_a_fresh_token_and_a_new_session_before_the_token_expires(
    oauth_transport, xoauth2_smtp, identity, ms_clock, make_outgoing
) -> None:
    identity.expires_in = 900
    transport = oauth_transport()
    messages = make_outgoing(6)

    first = transport.send_batch(messages[:3])
    ms_clock.advance(700)  # a rate-limited run: the token has 200 s left, inside the margin
    second = transport.send_batch(messages[3:])

    assert [r.status for r in first + second] == ["sent"] * 6
    assert xoauth2_smtp.recipients() == [m.recipient for m in messages]
    assert len(xoauth2_smtp.checks.auths) == 2
    assert len(set(xoauth2_smtp.checks.auths)) == 2  # a new token, not the old one again
    assert xoauth2_smtp.checks.refusals == []  # never refused: refreshed before expiry
    assert transport.connections_opened == 2


def test_a_revoked_token_is_replaced_once_and_the_send_goes_on(
    oauth_transport, xoauth2_smtp, identity, smtp_tokens, make_outgoing
) -> None:
    smtp_tokens.token()  # cached, then revoked behind our back
    identity.revoke_all()

    results = oauth_transport().send_batch(make_outgoing(2))

    assert [r.status for r in results] == ["sent", "sent"]
    assert len(xoauth2_smtp.checks.refusals) == 1
    assert len(xoauth2_smtp.checks.auths) == 1
    assert smtp_tokens.tokens_issued == 2


def test_a_mailbox_that_never_accepts_the_app_stops_the_run_with_the_set_up_to_check(
    oauth_transport, xoauth2_smtp, identity, make_outgoing
) -> None:
    xoauth2_smtp.checks.refuse_every = True
    with pytest.raises(DeliveryError) as caught:
        oauth_transport().send_batch(make_outgoing(2))
    message = str(caught.value)
    assert "535 5.7.3" in message and "SMTP.SendAsApp" in message and MAILBOX in message
    for token in identity.tokens_for(SMTP_SCOPE):
        assert token not in "".join(traceback.format_exception(caught.value))
    assert xoauth2_smtp.messages == []


def test_an_unreachable_identity_platform_leaves_everyone_temporary(
    oauth_transport, xoauth2_smtp, identity, make_outgoing
) -> None:
    identity.stop()
    results = oauth_transport().send_batch(make_outgoing(3))
    assert [r.status for r in results] == ["failed-temporary"] * 3
    assert "identity platform" in results[0].detail
    assert xoauth2_smtp.messages == []


def test_a_relay_without_xoauth2_is_refused_clearly(
    smtp_server, smtp_tokens, make_outgoing
) -> None:
    transport = SmtpTransport(smtp_server.settings(), MAILBOX, tokens=smtp_tokens)
    with pytest.raises(DeliveryError, match="does not offer AUTH XOAUTH2"):
        transport.send_batch(make_outgoing(1))
    transport.close()


def test_no_secret_or_token_reaches_the_logs_even_at_debug_level(
    oauth_transport, identity, make_outgoing, caplog, capsys
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = oauth_transport()
    assert transport.send_batch(make_outgoing(2))[0].ok
    transport.close()
    captured = capsys.readouterr()
    seen = caplog.text + captured.out + captured.err
    # The debug logs really were captured: the token request and the SMTP dialogue.
    assert "/oauth2/v2.0/token" in caplog.text and "AUTH XOAUTH2" in caplog.text
    for secret in [CLIENT_SECRET, *identity.tokens_for(SMTP_SCOPE)]:
        assert secret not in seen


# -- what Microsoft 365 answers ------------------------------------------------


def test_a_tenant_that_disabled_smtp_passwords_is_explained(
    smtp_server_factory, make_outgoing
) -> None:
    def refuse(server, session, envelope, mechanism, auth_data) -> AuthResult:
        return AuthResult(
            success=False,
            handled=False,
            message="535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
            "disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more "
            "information.",
        )

    server = smtp_server_factory(authenticator=refuse, auth_require_tls=False)
    settings = server.settings(username=MAILBOX, password=PASSWORD)
    transport = SmtpTransport(settings, MAILBOX)
    with pytest.raises(DeliveryError) as caught:
        transport.send_batch(make_outgoing(2))
    transport.close()
    assert (
        'this tenant no longer accepts passwords for SMTP; set smtp.auth: oauth2 (see docs/routes.md, "Microsoft 365")'
        in str(caught.value)
    )
    assert PASSWORD not in str(caught.value)
    assert server.messages == []


def test_basic_authentication_refused_at_submission_is_explained(
    smtp_server, make_outgoing
) -> None:
    async def refuse(server, session, envelope, address, options):
        return "550 5.7.30 Basic authentication is not supported for Client Submission."

    smtp_server.handle_MAIL = refuse
    transport = SmtpTransport(smtp_server.settings(), MAILBOX)
    with pytest.raises(DeliveryError, match=r"set smtp\.auth: oauth2"):
        transport.send_batch(make_outgoing(2))
    transport.close()


def test_submission_rate_throttling_slows_the_run_instead_of_failing_anyone(
    smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(5)
    smtp_server.fail(
        messages[2].recipient,
        421,
        stage="DATA",
        times=1,
        text="4.4.2 Message submission rate for this client has exceeded the configured limit",
    )
    transport = SmtpTransport(smtp_server.settings(), MAILBOX, throttle_wait=60.0)

    results = transport.send_batch(messages)
    transport.close()

    assert [r.status for r in results] == [
        "sent",
        "sent",
        "failed-temporary",
        "failed-temporary",
        "failed-temporary",
    ]
    assert all(r.retry_after == 60.0 for r in results[2:])
    assert "slow down" in results[2].detail and "4.4.2" in results[2].detail
    assert smtp_server.recipients() == [m.recipient for m in messages[:2]]
    assert transport.connections_opened == 1  # no reconnect-and-hammer after being throttled


def test_concurrent_connection_limits_and_4_7_deferrals_are_throttling_too(
    smtp_server, make_outgoing
) -> None:
    answers = iter(
        [
            "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            "451 4.7.500 Server busy. Please try again later.",
        ]
    )

    async def busy(server, session, envelope, address, options):
        return next(answers, None) or "250 OK"

    smtp_server.handle_MAIL = busy
    transport = SmtpTransport(smtp_server.settings(), MAILBOX, throttle_wait=30.0)
    for _ in range(2):
        results = transport.send_batch(make_outgoing(2))
        assert [(r.status, r.retry_after) for r in results] == [("failed-temporary", 30.0)] * 2
    transport.close()


def test_a_4_7_refusal_of_one_recipient_stays_about_that_recipient(
    smtp_server, make_outgoing
) -> None:
    messages = make_outgoing(["a@example.org", "grey@example.org", "b@example.org"])
    smtp_server.fail("grey@example.org", 450, text="4.7.1 Greylisted, try again in 5 minutes")
    transport = SmtpTransport(smtp_server.settings(), MAILBOX)
    results = transport.send_batch(messages)
    transport.close()
    assert [r.status for r in results] == ["sent", "failed-temporary", "sent"]
    assert results[1].retry_after is None


def test_exchange_throttling_a_sender_for_repeated_errors_stops_the_run(
    smtp_server, make_outgoing
) -> None:
    smtp_server.fail(
        "reader1@example.org",
        550,
        text="5.2.252 SendAsDenied; Sender throttled due to continuous send as denied errors.",
    )
    transport = SmtpTransport(smtp_server.settings(), MAILBOX)
    with pytest.raises(DeliveryError, match=r"stopped .* sending for a while"):
        transport.send_batch(make_outgoing(2))
    transport.close()
