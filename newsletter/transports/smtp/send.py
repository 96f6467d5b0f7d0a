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
permanent when it is about the recipient (`replies.refusal_scope`). A
5xx about the message, the sender or the relay stops the run instead
(`DeliveryError`), so a content filter cannot put the whole list on the
suppression list. A 421, or a connection that drops before the end of DATA,
is reconnected and that message tried once more. A timeout or a dropped
connection *after* the end of DATA was sent is `unknown`: the relay may
have taken the message (RFC 5321 §4.5.3.2.6), so it is neither retried here
nor counted as failed. Problems no retry can fix (a refused password, an
untrusted certificate, a server without STARTTLS, a refused sender address)
raise `DeliveryError` so the run stops with a clear message.

How it logs in is `smtp.auth` (see `settings`).
Microsoft 365 (smtp.office365.com, `smtp.auth: oauth2`): see `connection`.

International addresses: see `envelope` (and `connection.login_with_password`
for a username or password with non-ASCII characters).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Sequence

from newsletter.core.errors import ConfigError, DeliveryError, TokenUnavailable
from newsletter.core.ratelimit import Clock, SystemClock
from newsletter.core.scrub import SecretScrubber
from newsletter.core.settings import Settings
from newsletter.transports.base import (
    DeliveryResult,
    DeliveryStatus,
    OutgoingMessage,
    Route,
    SettingProblem,
    is_placeholder_host,
)
from newsletter.transports.halt import Halt, RestLater, send_each
from newsletter.transports.microsoft.identity import (
    SMTP_SCOPE,
    AccessToken,
    MicrosoftIdentity,
    TokenProvider,
    TokenSource,
    xoauth2_response,
)
from newsletter.transports.microsoft.settings import APP_REGISTRATION, OAuthSettings
from newsletter.transports.smtp.connection import (
    BASIC_AUTH_DISABLED,
    PASSWORDS_DISABLED_ADVICE,
    POLICY_DEFERRAL,
    SENDER_THROTTLED,
    SERVICE_CLOSING,
    THROTTLING,
    WHERE_TO_SET,
    Reply,
    Throttled,
    Unreachable,
    failure,
    login_with_password,
    open_client,
    secure,
)
from newsletter.transports.smtp.envelope import Undeliverable, transmit
from newsletter.transports.smtp.replies import refusal_scope
from newsletter.transports.smtp.settings import (
    HOST_ENV,
    PASSWORD_ENV,
    USERNAME_ENV,
    SmtpSettings,
)


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
        """New transports for the relay in the `smtp` settings, one per worker.

        `bounce_address` (else the From address) is the envelope sender: MAIL
        FROM is where bounces go, and the receiving server writes it into the
        Return-Path header, so the message never carries one. With `smtp.auth:
        oauth2` every worker shares one token provider on `clock` (ConfigError
        now when the app registration is incomplete).
        """
        smtp = SmtpSettings.of(settings)
        tokens: TokenProvider | None = None
        if smtp.auth == "oauth2":
            identity = MicrosoftIdentity.from_settings(OAuthSettings.of(settings))
            tokens = TokenProvider(identity, SMTP_SCOPE, clock=clock, verify=settings.https_verify)
        envelope_from = settings.bounce_address or settings.from_address
        # One TLS context for every worker (only a relay without TLS needs none).
        context = ssl.create_default_context() if smtp.security != "none" else None
        return lambda: cls(smtp, envelope_from, tokens=tokens, ssl_context=context)

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        """One transport for the relay in the `smtp` settings (see `opener`)."""
        return cls.opener(settings, SystemClock())()

    @staticmethod
    def default_concurrency(settings: Settings) -> int:
        return max(1, SmtpSettings.of(settings).connections)

    @staticmethod
    def describe(settings: Settings) -> str:
        smtp = SmtpSettings.of(settings)
        if smtp.auth == "oauth2":
            user = smtp.username or settings.bounce_address or settings.from_address
            login = f"XOAUTH2 as {user} with an app-only token for {APP_REGISTRATION}"
        elif smtp.auth == "password" and smtp.username and smtp.password:
            login = f"login as {smtp.username} with the password from {PASSWORD_ENV}"
        else:
            login = "no login"
        return f"smtp: {smtp.host}:{smtp.port}, security {smtp.security}, {login}"

    @staticmethod
    def route(settings: Settings) -> Route:
        smtp = SmtpSettings.of(settings)
        where = f"{smtp.host}:{smtp.port}"
        if smtp.auth == "oauth2":
            return Route(
                f"Microsoft 365 SMTP with OAuth2 ({where})",
                tuple(OAuthSettings.of(settings).missing()),
            )
        if smtp.auth == "none":
            return Route(f"the SMTP relay {where}, without logging in")
        if smtp.username and smtp.password:
            return Route(f"the SMTP relay {where}, logging in as {smtp.username}")
        if smtp.username or smtp.password:
            missing = PASSWORD_ENV if smtp.username else USERNAME_ENV
            return Route(f"the SMTP relay {where}, logging in with a password", (missing,))
        return Route(f"the SMTP relay {where}, without logging in (no username set)")

    @staticmethod
    def setup_problems(settings: Settings) -> list[SettingProblem]:
        """A placeholder host, or half a login: what `validate` and the dry run warn about."""
        smtp = SmtpSettings.of(settings)
        problems = []
        if is_placeholder_host(smtp.host):
            problems.append(
                SettingProblem(
                    "smtp.host",
                    f"the SMTP host `{smtp.host}` is a placeholder (example names never "
                    f"receive mail); set {HOST_ENV} (or smtp.host) to your relay",
                )
            )
        if bool(smtp.username) != bool(smtp.password):
            missing = PASSWORD_ENV if smtp.username else USERNAME_ENV
            problems.append(
                SettingProblem(
                    "smtp",
                    f"SMTP login needs both {USERNAME_ENV} and {PASSWORD_ENV}; set {missing}",
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
        except Unreachable as error:
            raise ConfigError(
                self._scrub(f"{error}; if it keeps failing, check {error.check}")
            ) from None

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Send each message in turn; one result per message, in order."""
        return send_each(self._halt, messages, self._send_one_or_rest_later)

    def _send_one_or_rest_later(self, outgoing: OutgoingMessage) -> DeliveryResult:
        try:
            return self._send_one(outgoing)
        except Unreachable as error:
            # Every later message would wait for the same dead server: give the
            # rest back as temporary and let the dispatcher back off.
            raise RestLater(self._scrub(str(error))) from None
        except Throttled as error:
            # Sending on would only be refused again (and Microsoft punishes that).
            raise RestLater(self._scrub(error.detail), self.throttle_wait) from None

    def forget_connection(self) -> None:
        """Close this process's copy of the socket, saying nothing: a forked process sends on it."""
        self._drop()

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
                reply = transmit(
                    connection,
                    outgoing.return_path or self.envelope_from,
                    outgoing.recipient,
                    data,
                    self.where,
                    dot_free=outgoing.dot_free,
                )
            except Undeliverable as refusal:
                return DeliveryResult(
                    outgoing.recipient,
                    outgoing.message_id,
                    "failed-permanent",
                    self._scrub(str(refusal)),
                    address_at_fault=False,  # the relay's limit, not a bad address
                )
            except Reply as reply_error:
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

    def _refused(self, outgoing: OutgoingMessage, reply: Reply) -> DeliveryResult:
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

    def _result(
        self, outgoing: OutgoingMessage, status: DeliveryStatus, reply: Reply
    ) -> DeliveryResult:
        return DeliveryResult(
            outgoing.recipient, outgoing.message_id, status, self._describe(reply)
        )

    def _describe(self, reply: Reply) -> str:
        return self._scrub(f"{reply.code} {reply.text} (at {reply.stage})")

    @staticmethod
    def _queue_id(reply: str) -> str | None:
        # Postfix and others answer "2.0.0 Ok: queued as 4C2F..."; keep it to trace the message.
        marker = "queued as "
        if marker in reply:
            return reply.split(marker, 1)[1].split()[0] or None
        return reply.strip() or None

    # -- the connection ------------------------------------------------------

    def _check_microsoft_refusal(self, reply: Reply) -> None:
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
            raise Throttled(
                f"the SMTP server {self.where} asked us to slow down ({self._describe(reply)})"
            )

    def _connect(self) -> smtplib.SMTP:
        """The open session, or a new one (also when its OAuth2 token is about to expire)."""
        if self._connection is not None and not self._token_expiring():
            return self._connection
        self.close()
        if self._ssl_context is None and self.settings.security != "none":
            # Made once a transport and kept: loading the system's certificate
            # authorities costs 20-30 ms, for every connection of every worker.
            self._ssl_context = ssl.create_default_context()
        context = self._ssl_context
        try:
            connection = open_client(self.settings, context)
            try:
                secure(connection, self.settings.security, context)
                self._login(connection)
            except BaseException:
                connection.close()
                raise
        except (OSError, smtplib.SMTPException, TokenUnavailable) as error:
            meaning = failure(error, self.where)
            if isinstance(meaning, smtplib.SMTPAuthenticationError):
                raise self._login_refused(Reply.of("AUTH", meaning)) from None
            if isinstance(meaning, DeliveryError):  # the server's words may echo a secret
                raise DeliveryError(self._scrub(str(meaning))) from None
            raise meaning from None
        self._connection = connection
        self.connections_opened += 1
        return connection

    def _token_expiring(self) -> bool:
        token = self._connection_token
        return self._tokens is not None and token is not None and self._tokens.expiring(token)

    def _login(self, connection: smtplib.SMTP) -> None:
        """Log in as `smtp.auth` says: XOAUTH2, the username and password, or not at all."""
        settings = self.settings
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
            login_with_password(connection, settings.username, settings.password.reveal())
        elif settings.username or settings.password:
            raise DeliveryError(f"SMTP login needs both {USERNAME_ENV} and {PASSWORD_ENV}")

    def _login_refused(self, reply: Reply) -> DeliveryError:
        """Why the relay refused our login, and what to check: the password or the token."""
        if BASIC_AUTH_DISABLED.search(reply.answer):
            return DeliveryError(
                f"the SMTP server {self.where} refused password login "
                f"({self._describe(reply)}): {PASSWORDS_DISABLED_ADVICE}"
            )
        if self._tokens is not None:
            return DeliveryError(self._oauth_refused(reply))
        return DeliveryError(
            self._scrub(
                f"the SMTP server {self.where} refused the username and password "
                f"({reply.answer}); check {USERNAME_ENV} and {PASSWORD_ENV}"
            )
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

    def _oauth_refused(self, reply: Reply) -> str:
        assert self._tokens is not None
        user = self.settings.username or self.envelope_from
        return self._scrub(
            f"the SMTP server {self.where} refused the OAuth2 token for {user} "
            f"({reply.code} {reply.text}); check that the app registration has the "
            "application permission SMTP.SendAsApp with admin consent, that its service "
            "principal is registered in Exchange Online with access to this mailbox, and "
            'that SMTP AUTH is enabled for the mailbox (see docs/routes.md, "Microsoft 365")'
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
