"""Delivery through an SMTP relay (Microsoft 365, a council relay, Postfix).

One instance holds one connection and reuses it for many messages; the
dispatcher opens one instance per worker thread for parallel connections.
Certificates are always verified (`ssl.create_default_context()`; a relay
with an internal CA is trusted by pointing SSL_CERT_FILE at that CA). The
password is used only for AUTH and scrubbed from every message we produce.

A run calls `connect` before anyone is claimed: a placeholder host, a host
that does not resolve, a refused connection or a refused login then stops
the run with one message naming the variables to set, instead of queueing
everyone for a retry.
Replies map to results per recipient: 2xx sent, 4xx temporary, 5xx
permanent when it is about the recipient (`smtp_replies.refusal_scope`). A
5xx about the message, the sender or the relay stops the run instead
(`DeliveryError`), so a content filter cannot put the whole list on the
suppression list. A 421, or a connection that drops before the end of DATA,
is reconnected and that message tried once more. A timeout or a dropped
connection *after* the end of DATA was sent is `unknown`: the relay may
have taken the message (RFC 5321 §4.5.3.2.6), so it is neither retried here
nor counted as failed. Problems no retry can fix (a refused password, an
untrusted certificate, a server without STARTTLS, a refused sender address)
raise `DeliveryError` so the run stops with a clear message.

How it logs in is `smtp.auth`: `password` (the username and password, when
set), `none` (never, for a relay that knows this server) or `oauth2`.

Microsoft 365 (smtp.office365.com): with a token provider (`smtp.auth:
oauth2`; one provider per run, shared by every connection, see `opener`)
the transport logs in with SASL XOAUTH2 as the mailbox
(`NEWSLETTER_SMTP_USERNAME`, else the envelope sender) and an app-only token
for `https://outlook.office365.com/.default`; a connection is re-opened with
a fresh token before its token expires, and a refused token is replaced
once. Exchange's own answers are recognised: `535 5.7.139` and `550 5.7.30`
mean the tenant has turned off passwords for SMTP (stop: switch to OAuth2);
`5.2.251`-`5.2.255` mean Exchange throttled the mailbox for repeated errors
(stop); `421 4.4.2 Message submission rate ... exceeded`, `432 4.3.2`
(concurrent connections) and other `4.7.x` answers are throttling: that
message and the rest of the batch come back `temporary` with a
`retry_after`, so the run slows down instead of failing anyone.

International addresses: RCPT and MAIL carry the domain in IDNA form, which
every server takes. A message with a non-ASCII local part (in the envelope
or its headers) is sent with `SMTPUTF8 BODY=8BITMIME` when the server offers
SMTPUTF8; when it does not, that recipient fails permanently with a reason
that says so, and everyone else is still sent. A username or password with
non-ASCII characters is sent as UTF-8 (RFC 4616), which smtplib's own
`login` cannot do (it encodes AUTH as ASCII, python/cpython#73936).
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.ratelimit import Clock, SystemClock
from newsletter.core.scrub import SecretScrubber
from newsletter.core.settings import Settings, SmtpSettings
from newsletter.render.message import envelope_address
from newsletter.transports.base import (
    DeliveryResult,
    DeliveryStatus,
    OutgoingMessage,
    Route,
    SettingProblem,
    is_placeholder_host,
)
from newsletter.transports.halt import Halt, RestLater, send_each
from newsletter.transports.oauth import (
    SMTP_SCOPE,
    AccessToken,
    MicrosoftIdentity,
    TokenProvider,
    TokenSource,
    TokenUnavailable,
    xoauth2_response,
)
from newsletter.transports.smtp_replies import refusal_scope

if TYPE_CHECKING:
    from typing_extensions import Buffer

SERVICE_CLOSING = 421
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
POLICY_DEFERRAL = re.compile(r"\b4\.7\.\d+\b")
PASSWORDS_DISABLED_ADVICE = (
    "this tenant no longer accepts passwords for SMTP; set smtp.auth: oauth2 (see README)"
)
WHERE_TO_SET = (
    "NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT (or smtp.host and smtp.port in newsletter.yaml)"
)


@cache
def _local_hostname() -> str:
    # smtplib would call getfqdn() for every connection; once is enough.
    return socket.getfqdn()


class _Reply(Exception):
    """A non-success SMTP reply to one command for one message."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(stage, code, text)
        self.stage = stage  # MAIL, RCPT or DATA
        self.code = code
        self.text = text


class _Undeliverable(Exception):
    """This recipient cannot be sent through this server at all (no command was sent)."""


class _Unreachable(Exception):
    """The server cannot be reached or dropped us while connecting: try later."""


class _Throttled(Exception):
    """The server asked us to slow down: hand the rest back with a wait."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _SMTP(smtplib.SMTP):
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


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):
    """smtplib's implicit-TLS client, with the same memory of the end of DATA."""


class SmtpTransport:
    """Sends each message over one reused SMTP connection."""

    name = "smtp"
    sends_batch_in_one_request = False

    def __init__(
        self,
        smtp: SmtpSettings,
        envelope_from: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        batch_size: int = 50,
        tokens: TokenSource | None = None,
        throttle_wait: float = 60.0,
    ) -> None:
        self.settings = smtp
        self.envelope_from = envelope_from
        self.batch_size = batch_size
        self._ssl_context = ssl_context
        self._tokens = tokens
        # Microsoft counts messages per minute; a throttled sender waits out the minute.
        self.throttle_wait = throttle_wait
        self._connection: smtplib.SMTP | None = None
        self._connection_token: AccessToken | None = None
        self._halt = Halt()
        self.connections_opened = 0
        password = smtp.password.reveal() if smtp.password else ""
        auth_plain = f"\0{smtp.username or ''}\0{password}" if password else ""
        self._scrub_password = SecretScrubber([password], credentials=[auth_plain])
        # Each XOAUTH2 response sent (it travels in base64, the token inside it).
        self._scrub_xoauth2 = SecretScrubber()
        self._xoauth2_sent: list[str] = []

    def _scrub(self, text: str) -> str:
        """`text` without the password or any token (and the base64 forms they travel in)."""
        text = self._scrub_xoauth2(self._scrub_password(text))
        return self._tokens.scrub(text) if self._tokens is not None else text

    @classmethod
    def opener(cls, settings: Settings, clock: Clock) -> Callable[[], SmtpTransport]:
        """New transports for the relay in `settings.smtp`, one per worker.

        `bounce_address` (else the From address) is the envelope sender: MAIL
        FROM is where bounces go, and the receiving server writes it into the
        Return-Path header, so the message never carries one. With `smtp.auth:
        oauth2` every worker shares one token provider on `clock` (ConfigError
        now when the app registration is incomplete).
        """
        tokens: TokenProvider | None = None
        if settings.smtp.auth == "oauth2":
            identity = MicrosoftIdentity.from_settings(settings.oauth)
            tokens = TokenProvider(identity, SMTP_SCOPE, clock=clock, verify=settings.https_verify)
        envelope_from = settings.bounce_address or settings.from_address
        return lambda: cls(settings.smtp, envelope_from, tokens=tokens)

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        """One transport for the relay in `settings.smtp` (see `opener`)."""
        return cls.opener(settings, SystemClock())()

    @staticmethod
    def default_concurrency(settings: Settings) -> int:
        return max(1, settings.smtp.connections)

    @staticmethod
    def describe(settings: Settings) -> str:
        smtp = settings.smtp
        if smtp.auth == "oauth2":
            user = smtp.username or settings.bounce_address or settings.from_address
            login = (
                f"XOAUTH2 as {user} with an app-only token for the app registration in "
                "NEWSLETTER_OAUTH_TENANT_ID and NEWSLETTER_OAUTH_CLIENT_ID"
            )
        elif smtp.auth == "password" and smtp.username and smtp.password:
            login = f"login as {smtp.username} with the password from NEWSLETTER_SMTP_PASSWORD"
        else:
            login = "no login"
        return f"smtp: {smtp.host}:{smtp.port}, security {smtp.security}, {login}"

    @staticmethod
    def route(settings: Settings) -> Route:
        smtp = settings.smtp
        where = f"{smtp.host}:{smtp.port}"
        if smtp.auth == "oauth2":
            return Route(
                f"Microsoft 365 SMTP with OAuth2 ({where})", tuple(settings.oauth.missing())
            )
        if smtp.auth == "none":
            return Route(f"the SMTP relay {where}, without logging in")
        if smtp.username and smtp.password:
            return Route(f"the SMTP relay {where}, logging in as {smtp.username}")
        if smtp.username or smtp.password:
            missing = "NEWSLETTER_SMTP_PASSWORD" if smtp.username else "NEWSLETTER_SMTP_USERNAME"
            return Route(f"the SMTP relay {where}, logging in with a password", (missing,))
        return Route(f"the SMTP relay {where}, without logging in (no username set)")

    @staticmethod
    def setup_problems(settings: Settings) -> list[SettingProblem]:
        """A placeholder host, or half a login: what `validate` and the dry run warn about."""
        smtp = settings.smtp
        problems = []
        if is_placeholder_host(smtp.host):
            problems.append(
                SettingProblem(
                    "smtp.host",
                    f"the SMTP host `{smtp.host}` is a placeholder (example names never "
                    "receive mail); set NEWSLETTER_SMTP_HOST (or smtp.host) to your relay",
                )
            )
        if bool(smtp.username) != bool(smtp.password):
            missing = "NEWSLETTER_SMTP_PASSWORD" if smtp.username else "NEWSLETTER_SMTP_USERNAME"
            problems.append(
                SettingProblem(
                    "smtp",
                    "SMTP login needs both NEWSLETTER_SMTP_USERNAME and "
                    f"NEWSLETTER_SMTP_PASSWORD; set {missing}",
                )
            )
        return problems

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def connect(self) -> None:
        """Connect, secure and log in now, so a relay that cannot work stops the run first.

        ConfigError names the variables to set; a refused login or certificate
        raises DeliveryError as it would mid-run.
        """
        if is_placeholder_host(self.settings.host):
            raise ConfigError(
                f"the SMTP host `{self.settings.host}` is a placeholder, not a relay; "
                f"set {WHERE_TO_SET}"
            )
        try:
            self._connect()
        except _Unreachable as error:
            raise ConfigError(self._scrub(f"{error}; check {WHERE_TO_SET}")) from None

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Send each message in turn; one result per message, in order."""
        return send_each(self._halt, messages, self._send_one_or_rest_later)

    def _send_one_or_rest_later(self, outgoing: OutgoingMessage) -> DeliveryResult:
        try:
            return self._send_one(outgoing)
        except _Unreachable as error:
            # Every later message would wait for the same dead server: give the
            # rest back as temporary and let the dispatcher back off.
            raise RestLater(self._scrub(str(error))) from None
        except _Throttled as error:
            # Sending on would only be refused again (and Microsoft punishes that).
            raise RestLater(self._scrub(error.detail), self.throttle_wait) from None

    def close(self) -> None:
        """Say QUIT and drop the connection; safe to call twice."""
        connection, self._connection = self._connection, None
        self._connection_token = None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()

    # -- one message ---------------------------------------------------------

    def _send_one(self, outgoing: OutgoingMessage) -> DeliveryResult:
        data = outgoing.as_bytes()
        for attempt in (1, 2):
            connection = self._connect()
            try:
                reply = self._transmit(connection, outgoing.recipient, data, outgoing.return_path)
            except _Undeliverable as refusal:
                return DeliveryResult(
                    outgoing.recipient,
                    outgoing.message_id,
                    "failed-permanent",
                    self._scrub(str(refusal)),
                    address_at_fault=False,  # the relay's limit, not a bad address
                )
            except _Reply as reply_error:
                self._check_microsoft_refusal(reply_error)
                if reply_error.code == SERVICE_CLOSING:
                    self._drop()
                    if attempt == 1:
                        continue
                    return self._result(outgoing, "failed-temporary", reply_error)
                self._reset()
                return self._refused(outgoing, reply_error)
            except (smtplib.SMTPServerDisconnected, OSError) as error:
                handed_over = getattr(connection, "end_of_data_sent", False)
                self._drop()
                if handed_over:
                    return self._unconfirmed(outgoing, error)
                if attempt == 1:
                    continue
                detail = f"the SMTP server {self.where} dropped the connection twice ({error})"
                return DeliveryResult(
                    outgoing.recipient, outgoing.message_id, "failed-temporary", self._scrub(detail)
                )
            return DeliveryResult(
                outgoing.recipient, outgoing.message_id, "sent", "", self._queue_id(reply)
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, outgoing: OutgoingMessage, reply: _Reply) -> DeliveryResult:
        """A refusal: temporary (4xx), this recipient's (5xx about them), or the run stops."""
        if reply.code < 500:
            return self._result(outgoing, "failed-temporary", reply)
        if reply.stage == "MAIL":
            raise DeliveryError(
                f"the SMTP server {self.where} refused the sender address "
                f"{self.envelope_from}: {self._describe(reply)}"
            )
        if refusal_scope(reply.stage, reply.code, reply.text) == "recipient":
            return self._result(outgoing, "failed-permanent", reply)
        raise DeliveryError(
            f"the SMTP server {self.where} refused the message itself, not the recipient "
            f"({self._describe(reply)}); nobody was marked as failed or suppressed. Fix what "
            "it objects to (the content, the size, the sender or the relay's settings), "
            "then run the same command again"
        )

    def _unconfirmed(self, outgoing: OutgoingMessage, error: BaseException) -> DeliveryResult:
        """The whole message went and no answer came: it may have arrived, so never resend it here."""
        timed_out = isinstance(error, TimeoutError) or "timed out" in str(error)
        what = (
            f"no answer within {self.settings.timeout_seconds:g} s (smtp.timeout_seconds)"
            if timed_out
            else f"the connection dropped ({error})"
        )
        detail = (
            f"the SMTP server {self.where} was sent the whole message, then {what}; "
            "it may have been delivered, so it is not sent again unless asked"
        )
        return DeliveryResult(
            outgoing.recipient, outgoing.message_id, "unknown", self._scrub(detail)
        )

    def _transmit(
        self, connection: smtplib.SMTP, recipient: str, data: bytes, return_path: str | None
    ) -> str:
        """MAIL, RCPT, DATA for one recipient (MAIL FROM its signed return path, if any)."""
        sender = envelope_address(return_path or self.envelope_from)
        rcpt = envelope_address(recipient)
        options = []
        if connection.does_esmtp and connection.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        if not (rcpt.isascii() and sender.isascii() and data.isascii()):
            options += self._utf8_options(connection, recipient, rcpt, sender)
        code, text = connection.mail(sender, options)
        if code != 250:
            raise _Reply("MAIL", code, text.decode("utf-8", "replace"))
        code, text = connection.rcpt(rcpt)
        if code not in (250, 251):
            raise _Reply("RCPT", code, text.decode("utf-8", "replace"))
        try:
            code, text = connection.data(data)
        except smtplib.SMTPDataError as error:  # refused the DATA command itself
            raise _Reply("DATA", error.smtp_code, _text(error.smtp_error)) from None
        if code != 250:
            raise _Reply("DATA", code, text.decode("utf-8", "replace"))
        return text.decode("utf-8", "replace")

    def _utf8_options(
        self, connection: smtplib.SMTP, recipient: str, rcpt: str, sender: str
    ) -> list[str]:
        """MAIL options for a message with UTF-8 addresses, or why this server cannot take it."""
        if connection.has_extn("smtputf8"):
            # smtplib then sends MAIL and RCPT as UTF-8 (it switches back on RSET);
            # the headers are 8-bit, so say so where the server knows BODY=.
            body = ["BODY=8BITMIME"] if connection.has_extn("8bitmime") else []
            return ["SMTPUTF8", *body]
        if rcpt.isascii() or not sender.isascii():  # our own address: every message would fail
            raise DeliveryError(
                f"the sender or reply-to address has non-ASCII characters before the @, and the "
                f"SMTP server {self.where} does not offer SMTPUTF8, which such addresses need; "
                "use an ASCII address for `from.address` and `reply_to`, or a relay that offers it"
            )
        raise _Undeliverable(
            f"the address {recipient} has non-ASCII characters before the @, which only a "
            f"server offering SMTPUTF8 can carry, and the SMTP server {self.where} does not "
            "offer it; ask the relay's administrators to enable SMTPUTF8, or ask this "
            "person for an address without accents"
        )

    def _result(
        self, outgoing: OutgoingMessage, status: DeliveryStatus, reply: _Reply
    ) -> DeliveryResult:
        return DeliveryResult(
            outgoing.recipient, outgoing.message_id, status, self._describe(reply)
        )

    def _describe(self, reply: _Reply) -> str:
        return self._scrub(f"{reply.code} {reply.text} (at {reply.stage})")

    @staticmethod
    def _queue_id(reply: str) -> str | None:
        # Postfix and others answer "2.0.0 Ok: queued as 4C2F..."; keep it to trace the message.
        marker = "queued as "
        if marker in reply:
            return reply.split(marker, 1)[1].split()[0] or None
        return reply.strip() or None

    # -- the connection ------------------------------------------------------

    def _check_microsoft_refusal(self, reply: _Reply) -> None:
        """Raise for Exchange answers about the tenant or the sending pace, not the recipient."""
        text = f"{reply.code} {reply.text}"
        if BASIC_AUTH_DISABLED.search(text):
            self._drop()
            raise DeliveryError(
                f"the SMTP server {self.where} refused password login ({self._describe(reply)}): "
                + PASSWORDS_DISABLED_ADVICE
            )
        if reply.code >= 500 and SENDER_THROTTLED.search(text):
            self._drop()
            raise DeliveryError(
                f"Microsoft 365 has stopped {self.envelope_from} sending for a while after "
                f"repeated errors ({self._describe(reply)}); fix the cause it names, then "
                "run again later"
            )
        slow_down = THROTTLING.search(text) or (
            reply.stage != "RCPT" and POLICY_DEFERRAL.search(text)
        )
        if 400 <= reply.code < 500 and slow_down:
            if reply.code == SERVICE_CLOSING:
                self._drop()
            else:
                self._reset()
            raise _Throttled(
                f"the SMTP server {self.where} asked us to slow down ({self._describe(reply)})"
            )

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            token = self._connection_token
            if self._tokens is None or token is None or not self._tokens.expiring(token):
                return self._connection
            # The session's token is about to expire: start a new one with a fresh token.
            self.close()
        context = self._ssl_context or ssl.create_default_context()
        settings = self.settings
        connection: smtplib.SMTP
        try:
            if settings.security == "ssl":
                connection = _SMTP_SSL(
                    settings.host,
                    settings.port,
                    local_hostname=_local_hostname(),
                    timeout=settings.timeout_seconds,
                    context=context,
                )
            else:
                connection = _SMTP(
                    settings.host,
                    settings.port,
                    local_hostname=_local_hostname(),
                    timeout=settings.timeout_seconds,
                )
            try:
                self._secure_and_login(connection, context)
            except BaseException:
                connection.close()
                raise
        except ssl.SSLCertVerificationError as error:
            raise DeliveryError(
                f"the SMTP server {self.where} sent a certificate that cannot be trusted "
                f"({error.verify_message}); check the host name, or point SSL_CERT_FILE at "
                "your organisation's certificate authority"
            ) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as error:
            raise _Unreachable(
                f"the SMTP server {self.where} closed the connection during TLS ({error})"
            ) from None
        except ssl.SSLError as error:
            raise DeliveryError(
                f"cannot set up TLS with the SMTP server {self.where} ({error.reason}); "
                "check `smtp.security` (starttls on port 587, ssl on port 465) and the port"
            ) from None
        except smtplib.SMTPAuthenticationError as error:
            reply = _Reply("AUTH", error.smtp_code, _text(error.smtp_error))
            if BASIC_AUTH_DISABLED.search(f"{reply.code} {reply.text}"):
                raise DeliveryError(
                    f"the SMTP server {self.where} refused password login "
                    f"({self._describe(reply)}): {PASSWORDS_DISABLED_ADVICE}"
                ) from None
            if self._tokens is not None:
                raise DeliveryError(self._oauth_refused(reply)) from None
            raise DeliveryError(
                self._scrub(
                    f"the SMTP server {self.where} refused the username and password "
                    f"({error.smtp_code} {_text(error.smtp_error)}); check "
                    "NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD"
                )
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            raise DeliveryError(self._scrub(f"the SMTP server {self.where}: {error}")) from None
        except TokenUnavailable as error:
            raise _Unreachable(str(error)) from None
        except smtplib.SMTPResponseException as error:
            reply = _Reply("connect", error.smtp_code, _text(error.smtp_error))
            answer = f"{reply.code} {reply.text}"
            if 400 <= reply.code < 500 and (
                THROTTLING.search(answer) or POLICY_DEFERRAL.search(answer)
            ):
                raise _Throttled(
                    f"the SMTP server {self.where} asked us to slow down ({self._describe(reply)})"
                ) from None
            raise _Unreachable(
                f"the SMTP server {self.where} refused the connection "
                f"({error.smtp_code} {_text(error.smtp_error)})"
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise _Unreachable(
                f"cannot connect to the SMTP server {self.where} ({reason})"
            ) from None
        self._connection = connection
        self.connections_opened += 1
        return connection

    def _secure_and_login(self, connection: smtplib.SMTP, context: ssl.SSLContext) -> None:
        settings = self.settings
        connection.ehlo()
        if settings.security == "starttls":
            if not connection.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(
                    "it does not offer STARTTLS, so the password and messages would travel "
                    "unencrypted; use `security: ssl` if it expects TLS from the start"
                )
            connection.starttls(context=context)
            connection.ehlo()
        if self._tokens is not None:
            self._login_xoauth2(connection)
        elif settings.auth == "oauth2":
            raise DeliveryError(
                "`smtp.auth: oauth2` needs a token provider; open the transport with "
                "`transport_opener` (this is a bug, please report it)"
            )
        elif settings.auth == "none":
            return
        elif settings.username and settings.password:
            _login(connection, settings.username, settings.password.reveal())
        elif settings.username or settings.password:
            raise DeliveryError(
                "SMTP login needs both NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD"
            )

    def _login_xoauth2(self, connection: smtplib.SMTP) -> None:
        """AUTH XOAUTH2 as the mailbox; a refused token is replaced by a fresh one once."""
        assert self._tokens is not None
        offered = str(connection.esmtp_features.get("auth", "")).upper().split()
        if "XOAUTH2" not in offered:
            raise smtplib.SMTPNotSupportedError(
                "it does not offer AUTH XOAUTH2, so `smtp.auth: oauth2` cannot log in; "
                "check `smtp.host` (Microsoft 365: smtp.office365.com, port 587)"
            )
        user = self.settings.username or self.envelope_from
        for attempt in (1, 2):
            token = self._tokens.token()
            initial = xoauth2_response(user, token)
            self._scrub_xoauth2 = SecretScrubber(credentials=[*self._xoauth2_sent, initial])
            self._xoauth2_sent.append(initial)

            def respond(challenge: bytes | None = None, initial: str = initial) -> str:
                # After a refusal Exchange sends a 334 with a JSON error; the reply is empty.
                return initial if challenge is None else ""

            try:
                connection.auth("XOAUTH2", respond, initial_response_ok=True)
            except smtplib.SMTPAuthenticationError:
                self._tokens.invalidate(token)
                if attempt == 1:
                    continue
                raise
            self._connection_token = token
            return

    def _oauth_refused(self, reply: _Reply) -> str:
        assert self._tokens is not None
        user = self.settings.username or self.envelope_from
        return self._scrub(
            f"the SMTP server {self.where} refused the OAuth2 token for {user} "
            f"({reply.code} {reply.text}); check that the app registration has the "
            "application permission SMTP.SendAsApp with admin consent, that its service "
            "principal is registered in Exchange Online with access to this mailbox, and "
            "that SMTP AUTH is enabled for the mailbox (see README)"
        )

    def _reset(self) -> None:
        """RSET after a refusal so the next message starts clean; drop the connection if that fails."""
        if self._connection is None:
            return
        try:
            self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._connection_token = None
        if connection is not None:
            connection.close()


def _login(connection: smtplib.SMTP, username: str, password: str) -> None:
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


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
