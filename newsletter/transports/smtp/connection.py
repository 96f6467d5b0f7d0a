"""Opening a session with an SMTP relay: connect, secure, log in, and what each failure means.

`SmtpTransport` gathers the facts (it opens a client, secures it, logs in)
and asks `failure` what an exception raised on the way means for the run:
- the relay cannot be reached, dropped us or refused us for now:
  `Unreachable` (everyone goes back `temporary`; at the start of a run, a
  ConfigError naming what to check);
- it asked us to slow down: `Throttled`;
- no retry can help (an untrusted certificate, TLS that cannot be set up,
  a server without STARTTLS or without the login we need): `DeliveryError`,
  which stops the run with one message naming what to set.
A refused login is the transport's to explain (`SmtpTransport._login_refused`),
as only it knows whether a password or an OAuth2 token was refused.

Microsoft 365 (smtp.office365.com): with a token provider (`smtp.auth:
oauth2`; one provider per run, shared by every connection, see
`SmtpTransport.opener`) the transport logs in with SASL XOAUTH2 as the
mailbox (NEWSLETTER_SMTP_USERNAME, else the envelope sender) and an
app-only token for `https://outlook.office365.com/.default`; a connection is
re-opened with a fresh token before its token expires, and a refused token
is replaced once. Exchange's own answers are recognised: `535 5.7.139` and
`550 5.7.30` mean the tenant has turned off passwords for SMTP (stop: switch
to OAuth2); `5.2.251`-`5.2.255` mean Exchange throttled the mailbox for
repeated errors (stop); `421 4.4.2 Message submission rate ... exceeded`,
`432 4.3.2` (concurrent connections) and other `4.7.x` answers are
throttling: that message and the rest of the batch come back `temporary`
with a `retry_after`, so the run slows down instead of failing anyone.
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
from functools import cache
from typing import TYPE_CHECKING

from newsletter.core.errors import DeliveryError, TokenUnavailable
from newsletter.transports.smtp.settings import HOST_ENV, PORT_ENV, SmtpSettings

if TYPE_CHECKING:
    from typing_extensions import Buffer

# Exchange Online when the tenant has disabled basic (password) authentication for SMTP.
BASIC_AUTH_DISABLED = re.compile(r"\b5\.7\.(?:139|30)\b")
# Exchange Online throttling a mailbox after repeated errors of one kind: no retry helps.
SENDER_THROTTLED = re.compile(r"\b5\.2\.25[1-5]\b")
# Answers that mean "slow down", not "this recipient failed". A 4.7.x at RCPT is
# left out: relays use it for one recipient (greylisting, a policy refusal).
THROTTLING = re.compile(
    r"\b4\.4\.2\b|\b4\.3\.2\b|submission rate|thread limit|"
    r"concurrent connection limit|too many (?:connections|messages)",
    re.IGNORECASE,
)
# The server is closing the session: it answers nothing after this (RFC 5321 §3.8).
SERVICE_CLOSING = 421
POLICY_DEFERRAL = re.compile(r"\b4\.7\.\d+\b")
PASSWORDS_DISABLED_ADVICE = 'this tenant no longer accepts passwords for SMTP; set smtp.auth: oauth2 (see docs/routes.md, "Microsoft 365")'
WHERE_TO_SET = f"{HOST_ENV} and {PORT_ENV} (or smtp.host and smtp.port in newsletter.yaml)"
# What a comms officer can do about a relay that offers no STARTTLS, in their words.
NO_STARTTLS_ADVICE = (
    "it does not offer STARTTLS, so the password and messages would travel unencrypted. "
    "If the relay expects encryption from the start (usually on port 465), set "
    "`security: ssl` under `smtp:` in newsletter.yaml. Only if your IT team confirms it is a "
    "relay inside your own network that never encrypts, set `security: none`: messages (and "
    "any password) then travel unencrypted"
)


class Reply(Exception):
    """A non-success SMTP reply to one command (AUTH, MAIL, RCPT, DATA or connecting)."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(stage, code, text)
        self.stage = stage
        self.code = code
        self.text = text

    @classmethod
    def of(cls, stage: str, error: smtplib.SMTPResponseException) -> Reply:
        return cls(stage, error.smtp_code, reply_text(error.smtp_error))

    @property
    def answer(self) -> str:
        return f"{self.code} {self.text}"

    def asks_to_slow_down(self) -> bool:
        """A 4xx that means "slow down" (throttling or a policy deferral), not "failed"."""
        return 400 <= self.code < 500 and bool(
            THROTTLING.search(self.answer) or POLICY_DEFERRAL.search(self.answer)
        )


class Unreachable(Exception):
    """The server (or the identity platform) cannot be reached or dropped us: try later.

    `check` names what to set if it keeps happening.
    """

    def __init__(self, detail: str, check: str = WHERE_TO_SET) -> None:
        super().__init__(detail)
        self.check = check


class Throttled(Exception):
    """The server asked us to slow down: hand the rest back with a wait."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@cache
def _local_hostname() -> str:
    # smtplib would call getfqdn() for every connection; once is enough.
    return socket.getfqdn()


class SmtpClient(smtplib.SMTP):
    """smtplib's client, remembering whether the last thing it sent was the end of DATA.

    After that, a timeout or a dropped connection leaves the outcome unknown:
    the server may have taken the message before it could answer.
    """

    end_of_data_sent = False

    def send(self, s: Buffer | str) -> None:
        self.end_of_data_sent = False
        super().send(s)
        # smtplib sends the message as one block ending "<CRLF>.<CRLF>"; commands are text.
        self.end_of_data_sent = not isinstance(s, str) and bytes(memoryview(s)[-5:]) == b"\r\n.\r\n"


class SmtpSslClient(SmtpClient, smtplib.SMTP_SSL):
    """smtplib's implicit-TLS client, with the same memory of the end of DATA."""


def open_client(settings: SmtpSettings, context: ssl.SSLContext | None) -> SmtpClient:
    """Connect to the relay (TLS from the start for `security: ssl`) and read its greeting.

    `context` is None only for `security: none`.
    """
    if settings.security == "ssl":
        assert context is not None
        return SmtpSslClient(
            settings.host,
            settings.port,
            local_hostname=_local_hostname(),
            timeout=settings.timeout_seconds,
            context=context,
        )
    return SmtpClient(
        settings.host,
        settings.port,
        local_hostname=_local_hostname(),
        timeout=settings.timeout_seconds,
    )


def secure(connection: smtplib.SMTP, security: str, context: ssl.SSLContext | None) -> None:
    """EHLO, then STARTTLS when `security: starttls` (refusing to go on without it)."""
    connection.ehlo()
    if security != "starttls":
        return
    assert context is not None
    if not connection.has_extn("starttls"):
        raise smtplib.SMTPNotSupportedError(NO_STARTTLS_ADVICE)
    connection.starttls(context=context)
    connection.ehlo()


def failure(error: Exception, where: str) -> Exception:
    """What an exception raised while connecting or securing means for the run.

    A refused login (`SMTPAuthenticationError`) is not decided here: it is
    returned as it is, for the transport to explain.
    """
    if isinstance(error, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"the SMTP server {where} sent a certificate that cannot be trusted "
            f"({error.verify_message}); check the host name, or point SSL_CERT_FILE at "
            "your organisation's certificate authority"
        )
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return Unreachable(f"the SMTP server {where} closed the connection during TLS ({error})")
    if isinstance(error, ssl.SSLError):
        return DeliveryError(
            f"cannot set up TLS with the SMTP server {where} ({error.reason}); "
            "check `smtp.security` (starttls on port 587, ssl on port 465) and the port"
        )
    if isinstance(error, TokenUnavailable):
        return Unreachable(str(error), error.check)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"the SMTP server {where}: {error}")
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return error
    if isinstance(error, smtplib.SMTPResponseException):
        return _refused_at_connect(Reply.of("connect", error), where)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return Unreachable(f"cannot connect to the SMTP server {where} ({reason})")


def _refused_at_connect(reply: Reply, where: str) -> Exception:
    if reply.asks_to_slow_down():
        return Throttled(f"the SMTP server {where} asked us to slow down ({reply.answer})")
    return Unreachable(f"the SMTP server {where} refused the connection ({reply.answer})")


def login_with_password(connection: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH with smtplib's `login`, or, for non-ASCII credentials, PLAIN or LOGIN in UTF-8.

    smtplib base64-encodes AUTH answers from ASCII, so a password with an
    accent raised UnicodeEncodeError, whose message names the character.
    RFC 4616 defines PLAIN's credentials as UTF-8, and servers read LOGIN's
    the same way; CRAM-MD5 has no agreed encoding, so it is not used for them.
    """
    if username.isascii() and password.isascii():
        connection.login(username, password)
        return
    connection.ehlo_or_helo_if_needed()
    offered = connection.esmtp_features.get("auth", "").upper().split()
    if "PLAIN" in offered:
        code, reply = connection.docmd("AUTH", "PLAIN " + _base64(f"\0{username}\0{password}"))
    elif "LOGIN" in offered:
        code, reply = connection.docmd("AUTH", "LOGIN")
        if code == 334:
            code, reply = connection.docmd(_base64(username))
        if code == 334:
            code, reply = connection.docmd(_base64(password))
    elif connection.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError(
            "it offers no login method that can carry a username or password with non-ASCII "
            f"characters (it offers {' '.join(offered) or 'none'}; PLAIN or LOGIN is needed)"
        )
    else:
        raise smtplib.SMTPNotSupportedError("it does not offer SMTP AUTH, so it cannot log in")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def reply_text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
