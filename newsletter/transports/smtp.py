"""Delivery through an SMTP relay (Microsoft 365, a council relay, Postfix).

One instance holds one connection and reuses it for many messages; the
dispatcher opens one instance per worker thread for parallel connections.
Certificates are always verified (`ssl.create_default_context()`; a relay
with an internal CA is trusted by pointing SSL_CERT_FILE at that CA). The
password is used only for AUTH and scrubbed from every message we produce.

A run calls `connect` before anyone is claimed: a placeholder host, a host
that does not resolve, a refused connection or a refused login then stops
the run with one message naming the variables to set, instead of queueing
everyone for a retry. Once sending, replies map to results per recipient:
2xx sent, 4xx temporary, 5xx permanent. A 421 or a dropped connection is reconnected and that message
tried once more. Problems no retry can fix (a refused password, an
untrusted certificate, a server without STARTTLS, a refused sender address)
raise `DeliveryError` so the run stops with a clear message.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from functools import cache

from newsletter.errors import ConfigError, DeliveryError
from newsletter.scrub import SecretScrubber
from newsletter.settings import Settings, SmtpSettings
from newsletter.transports.base import (
    DeliveryResult,
    DeliveryStatus,
    OutgoingMessage,
    SettingProblem,
    is_placeholder_host,
)
from newsletter.transports.halt import Halt

SERVICE_CLOSING = 421
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


class _Unreachable(Exception):
    """The server cannot be reached or dropped us while connecting: try later."""


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
                if reply_error.stage == "MAIL" and reply_error.code >= 500:
                    raise DeliveryError(
                        f"the SMTP server {self.where} refused the sender address "
                        f"{self.envelope_from}: {self._describe(reply_error)}"
                    ) from None
                status: DeliveryStatus = (
                    "failed-permanent" if reply_error.code >= 500 else "failed-temporary"
                )
                return self._result(outgoing, status, reply_error)
            except (smtplib.SMTPServerDisconnected, OSError) as error:
                self._drop()
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
                connection = smtplib.SMTP_SSL(
                    settings.host,
                    settings.port,
                    local_hostname=_local_hostname(),
                    timeout=settings.timeout_seconds,
                    context=context,
                )
            else:
                connection = smtplib.SMTP(
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
