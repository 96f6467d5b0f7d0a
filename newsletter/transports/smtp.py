"""Delivery through an SMTP relay (Microsoft 365, a council relay, Postfix).

One instance holds one connection and reuses it for many messages; the
dispatcher opens one instance per worker thread for parallel connections.
Certificates are always verified (`ssl.create_default_context()`; a relay
with an internal CA is trusted by pointing SSL_CERT_FILE at that CA). The
password is used only for AUTH and scrubbed from every message we produce.

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
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from newsletter.errors import DeliveryError
from newsletter.scrub import SecretScrubber
from newsletter.settings import Settings, SmtpSettings
from newsletter.transports.base import DeliveryResult, DeliveryStatus, OutgoingMessage
from newsletter.transports.halt import Halt
from newsletter.transports.smtp_replies import refusal_scope

if TYPE_CHECKING:
    from typing_extensions import Buffer

SERVICE_CLOSING = 421


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


class _Unreachable(Exception):
    """The server cannot be reached or dropped us while connecting: try later."""


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
    ) -> None:
        self.settings = smtp
        self.envelope_from = envelope_from
        self.batch_size = batch_size
        self._ssl_context = ssl_context
        self._connection: smtplib.SMTP | None = None
        self._halt = Halt()
        self.connections_opened = 0
        password = smtp.password.reveal() if smtp.password else ""
        auth_plain = f"\0{smtp.username or ''}\0{password}" if password else ""
        self._scrub = SecretScrubber([password], credentials=[auth_plain])

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(settings.smtp, settings.from_address)

    @staticmethod
    def default_concurrency(settings: Settings) -> int:
        return max(1, settings.smtp.connections)

    @staticmethod
    def describe(settings: Settings) -> str:
        smtp = settings.smtp
        login = (
            f"login as {smtp.username} with the password from NEWSLETTER_SMTP_PASSWORD"
            if smtp.username and smtp.password
            else "no login"
        )
        return f"smtp: {smtp.host}:{smtp.port}, security {smtp.security}, {login}"

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Send each message in turn; one result per message, in order."""
        self._halt.check()
        results: list[DeliveryResult] = []
        for index, outgoing in enumerate(messages):
            try:
                results.append(self._send_one(outgoing))
            except _Unreachable as error:
                # Every later message would wait for the same dead server: give the
                # rest back as temporary and let the dispatcher back off.
                detail = self._scrub(str(error))
                results += [
                    DeliveryResult(m.recipient, m.message_id, "failed-temporary", detail)
                    for m in messages[index:]
                ]
                break
            except DeliveryError as error:
                return self._halt.stop(error, results, messages[index:])
        return results

    def close(self) -> None:
        """Say QUIT and drop the connection; safe to call twice."""
        connection, self._connection = self._connection, None
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
                reply = self._transmit(connection, outgoing.recipient, data)
            except _Reply as reply_error:
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

    def _transmit(self, connection: smtplib.SMTP, recipient: str, data: bytes) -> str:
        """MAIL, RCPT, DATA for one recipient; return the final reply text."""
        options = []
        if connection.does_esmtp and connection.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        code, text = connection.mail(self.envelope_from, options)
        if code != 250:
            raise _Reply("MAIL", code, text.decode("utf-8", "replace"))
        code, text = connection.rcpt(recipient)
        if code not in (250, 251):
            raise _Reply("RCPT", code, text.decode("utf-8", "replace"))
        try:
            code, text = connection.data(data)
        except smtplib.SMTPDataError as error:  # refused the DATA command itself
            raise _Reply("DATA", error.smtp_code, _text(error.smtp_error)) from None
        if code != 250:
            raise _Reply("DATA", code, text.decode("utf-8", "replace"))
        return text.decode("utf-8", "replace")

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

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
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
            raise DeliveryError(
                self._scrub(
                    f"the SMTP server {self.where} refused the username and password "
                    f"({error.smtp_code} {_text(error.smtp_error)}); check "
                    "NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD"
                )
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            raise DeliveryError(self._scrub(f"the SMTP server {self.where}: {error}")) from None
        except smtplib.SMTPResponseException as error:
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
        if settings.username and settings.password:
            connection.login(settings.username, settings.password.reveal())
        elif settings.username or settings.password:
            raise DeliveryError(
                "SMTP login needs both NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD"
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
        if connection is not None:
            connection.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
