"""Delivery through Microsoft Graph `sendMail`, posting the complete MIME message we built.

The contract relied on (Microsoft Graph v1.0, "user: sendMail",
learn.microsoft.com/graph/api/user-sendmail, and "Send Outlook messages in
MIME format", learn.microsoft.com/graph/outlook-send-mime-message):
- `POST {base}/v1.0/users/{id | userPrincipalName}/sendMail` with
  `Authorization: Bearer {token}` (an app-only token for
  `https://graph.microsoft.com/.default`, application permission
  `Mail.Send` with admin consent) and `Content-Type: text/plain`; the body
  is the RFC 5322 message, base64-encoded. Recipients come from its
  To/Cc/Bcc headers; a copy is saved in the mailbox's Sent Items.
- `202 Accepted`, empty body: handed to Exchange Online, whose own limits
  (30 messages a minute, 10,000 recipients a day per mailbox) still apply.
- Errors are `{"error": {"code", "message"}}`: 400
  `ErrorMimeContentInvalidBase64String`/`ErrorMimeContentInvalid` (our
  request is wrong), 401 `InvalidAuthenticationToken` (expired or wrong
  token), 403 `ErrorAccessDenied` (no Mail.Send, no admin consent, or an
  application access policy leaves this mailbox out), 404
  `ErrorInvalidUser`/`MailboxNotEnabledForRESTAPI` (no such mailbox), 413
  too large, 429 throttled and 503/504 busy, both with `Retry-After`.

Our mapping: 202 sent (Graph's `request-id` kept to trace it). 429/5xx and
a failed connection are retried after the asked wait (longer waits come
back as `retry_after` on `temporary` results). A 401 gets one fresh token
and one more try. `ErrorInvalidRecipients` is about this recipient:
`permanent`. Every other 4xx means the request or the set-up is wrong for
everyone: `DeliveryError` stops the run with one clear message.

Set up from the `graph` settings (`graph.sender`, default the From address;
NEWSLETTER_GRAPH_URL for a sovereign cloud) and the `oauth` settings; the run's
workers (`graph.connections`, at most 4) share one token provider.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Sequence
from email.utils import formataddr, getaddresses
from typing import Any
from urllib.parse import quote

import requests

from newsletter.core.errors import DeliveryError, TokenUnavailable
from newsletter.core.ratelimit import Clock, SystemClock
from newsletter.core.settings import Settings
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Route, SettingProblem
from newsletter.transports.graph.settings import DEFAULT_URL, URL_ENV, GraphSettings
from newsletter.transports.halt import Halt, RestLater, send_each
from newsletter.transports.http import RetryPolicy, may_have_arrived, retry_after_seconds
from newsletter.transports.microsoft.identity import (
    GRAPH_SCOPE,
    MicrosoftIdentity,
    TokenProvider,
    TokenSource,
    https_verify,
)
from newsletter.transports.microsoft.settings import (
    APP_REGISTRATION,
    CLIENT_ID_ENV,
    TENANT_ENV,
    OAuthSettings,
)

RECIPIENT_CODES = frozenset({"ErrorInvalidRecipients"})
MAILBOX_CODES = frozenset({"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "ResourceNotFound"})


class GraphTransport:
    """Sends each message with its own `sendMail` call, as the mailbox `sender`."""

    name = "graph"
    sends_batch_in_one_request = False

    def __init__(
        self,
        sender: str,
        tokens: TokenSource,
        *,
        base_url: str = DEFAULT_URL,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        timeout: float = 30.0,
        batch_size: int = 20,
        verify: str | bool | None = None,
    ) -> None:
        self.sender = sender
        self.tokens = tokens
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.timeout = timeout
        self.batch_size = batch_size
        self.session = requests.Session()
        self.session.verify = https_verify() if verify is None else verify
        self.session.headers.update({"User-Agent": "newsletter"})
        self._url = f"{self.base_url}/v1.0/users/{quote(sender, safe='@')}/sendMail"
        self._halt = Halt()

    @classmethod
    def opener(cls, settings: Settings, clock: Clock) -> Callable[[], GraphTransport]:
        """New transports for `graph.sender`, one per worker, sharing one token provider.

        ConfigError now when the app registration is incomplete.
        """
        identity = MicrosoftIdentity.from_settings(OAuthSettings.of(settings))
        tokens = TokenProvider(identity, GRAPH_SCOPE, clock=clock, verify=settings.https_verify)
        graph = GraphSettings.of(settings)
        return lambda: cls(
            graph.sender,
            tokens,
            base_url=graph.base_url,
            clock=clock,
            verify=settings.https_verify,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphTransport:
        """One transport for `graph.sender` (see `opener`)."""
        return cls.opener(settings, SystemClock())()

    @staticmethod
    def default_concurrency(settings: Settings) -> int:
        return max(1, GraphSettings.of(settings).connections)

    @staticmethod
    def describe(settings: Settings) -> str:
        graph = GraphSettings.of(settings)
        return (
            f"graph: sendMail as {graph.sender} at {graph.base_url}, with an app-only token "
            f"for {APP_REGISTRATION}"
        )

    @staticmethod
    def setup_problems(settings: Settings) -> list[SettingProblem]:
        return []  # what it still needs is named by `route` (missing variables)

    @staticmethod
    def route(settings: Settings) -> Route:
        return Route(
            f"Microsoft 365 Graph sendMail as {GraphSettings.of(settings).sender}",
            tuple(OAuthSettings.of(settings).missing()),
        )

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Send each message in turn; one result per message, in order.

        When Graph asks for a longer wait than we sleep, the rest would only be
        throttled too, so all of them go back with the wait it asked for.
        """
        return send_each(self._halt, messages, self._send_one)

    def close(self) -> None:
        self.session.close()

    def payload(self, outgoing: OutgoingMessage) -> bytes:
        """The message as Graph takes it: base64 of the RFC 5322 bytes, addressed to the recipient."""
        message = outgoing.message
        to = [address for _, address in getaddresses([str(message.get("To", ""))])]
        data = outgoing.as_bytes()
        if [a.lower() for a in to] != [outgoing.recipient.lower()]:
            # Graph delivers to the To header, not an envelope: make them agree so
            # nobody but this recipient can get this copy.
            message = copy.deepcopy(message)
            del message["To"]
            message["To"] = formataddr(("", outgoing.recipient))
            data = message.as_bytes()
        return base64.b64encode(data)

    # -- one message ---------------------------------------------------------

    def _send_one(self, outgoing: OutgoingMessage) -> DeliveryResult:
        body = self.payload(outgoing)
        refreshed = False
        detail = ""
        wait = 0.0
        attempt = 0
        while attempt < self.retry.attempts:
            attempt += 1
            try:
                token = self.tokens.token()
            except TokenUnavailable as error:
                raise RestLater(f"{error}; if it keeps failing, check {error.check}") from None
            try:
                response = self.session.post(
                    self._url,
                    data=body,
                    headers={
                        "Authorization": f"Bearer {token.value}",
                        "Content-Type": "text/plain",
                    },
                    timeout=self.timeout,
                )
            except requests.exceptions.SSLError as error:
                raise DeliveryError(
                    f"the certificate of {self.base_url} cannot be trusted ({type(error).__name__}); "
                    f"check {URL_ENV}, or point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at "
                    "your organisation's certificate authority"
                ) from None
            except requests.RequestException as error:
                if may_have_arrived(error):
                    # The whole message went and no answer came: Graph may have sent it,
                    # so it is never posted again here (see ledger.py: unknown outcomes).
                    return DeliveryResult(
                        outgoing.recipient,
                        outgoing.message_id,
                        "unknown",
                        f"Microsoft Graph was sent the whole message, then gave no answer "
                        f"({type(error).__name__}); it may have been delivered, so it is not "
                        "sent again unless asked",
                    )
                detail = f"Microsoft Graph could not be reached ({type(error).__name__})"
                wait = self.retry.backoff(attempt)
            else:
                status = response.status_code
                if status == 202:
                    return DeliveryResult(
                        outgoing.recipient,
                        outgoing.message_id,
                        "sent",
                        "",
                        response.headers.get("request-id"),
                    )
                code, text = _graph_error(response)
                if status == 401 and not refreshed:
                    # The token expired or was revoked between our check and Graph's.
                    self.tokens.invalidate(token)
                    refreshed = True
                    attempt -= 1
                    continue
                if status == 429 or status >= 500:
                    asked = retry_after_seconds(response.headers)
                    wait = asked if asked is not None else self.retry.backoff(attempt)
                    detail = self._scrub(f"Microsoft Graph answered HTTP {status} ({code}: {text})")
                elif code in RECIPIENT_CODES:
                    return DeliveryResult(
                        outgoing.recipient,
                        outgoing.message_id,
                        "failed-permanent",
                        self._scrub(f"Microsoft Graph refused the recipient ({code}: {text})"),
                    )
                else:
                    raise DeliveryError(self._refusal(status, code, text))
            if attempt >= self.retry.attempts or wait > self.retry.max_wait:
                break
            self.clock.sleep(wait)
        raise RestLater(detail, wait)

    def _refusal(self, status: int, code: str, text: str) -> str:
        """One clear line for a refusal that no retry can fix."""
        where = f"Microsoft Graph refused to send as {self.sender} (HTTP {status}, {code}: {text})"
        if status == 401:
            advice = (
                f"it does not accept the app's token; check {TENANT_ENV} and {CLIENT_ID_ENV} "
                "belong to this Microsoft 365 tenant"
            )
        elif status == 403:
            advice = (
                "the app registration is missing the application permission `Mail.Send`, "
                "which needs admin consent from a Microsoft 365 administrator (or an "
                f"application access policy leaves {self.sender} out)"
            )
        elif code in MAILBOX_CODES or status == 404:
            advice = f"there is no mailbox {self.sender} that Graph can send from; check the sender"
        elif status == 413:
            advice = "the message is over Graph's 4 MB limit; make the issue smaller"
        else:
            advice = "the request was refused as malformed; this is a bug, please report it"
        return self._scrub(f"{where}: {advice}")

    def _scrub(self, text: str) -> str:
        return self.tokens.scrub(text)


def _graph_error(response: requests.Response) -> tuple[str, str]:
    """Graph's error code and message, or the status text when the body says nothing."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or "unknown"), " ".join(str(error.get("message", "")).split())
    return "unknown", " ".join(response.text.split())[:200] or response.reason or ""
