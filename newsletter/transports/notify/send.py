"""Delivery through GOV.UK Notify, with its official Python client.

The contract relied on (docs.notifications.service.gov.uk/python.html and
the client, github.com/alphagov/notifications-python-client):
- `NotificationsAPIClient(api_key, base_url)`. The API key is
  `{key name}-{service id}-{secret}` (both UUIDs); every request carries a
  JWT (HS256, `iss` = service id, `iat` = now, within 30 seconds) signed
  with the secret. The key never leaves this process.
- `send_email_notification(email_address, template_id, personalisation,
  reference, one_click_unsubscribe_url)` POSTs `/v2/notifications/email`
  and answers 201 `{id, reference, content, uri, template}`. Notify builds
  the email from the template: ours has subject `((subject))` and body
  `((body))`, filled with the subject and the body in Notify's formatting
  (`notify.body`). `reference` is our Message-ID (a hash, no
  personal data), so a failure reported later can be matched to the
  ledger; `one_click_unsubscribe_url` (client 9.1+) is our https
  one-click address from List-Unsubscribe, when there is one.
- Errors: 400 `ValidationError` (`email_address Not a valid email
  address`, bad unsubscribe URL) and `BadRequestError` (team-only key or
  trial mode, template not found, missing personalisation, email too long),
  403 `AuthError` (wrong key, clock more than 30 s out), 429
  `RateLimitError` (3,000 requests a minute per key type) and
  `TooManyRequestsError` (the daily limit, reset at midnight UTC), 500.
- Delivery happens later: a message's status becomes `delivered`,
  `permanent-failure` (the address does not exist), `temporary-failure` or
  `technical-failure`; `GET /v2/notifications?status=...` lists them (250 a
  page, newest first, `older_than` for the next page) for 7 days.

Our mapping: 201 sent (Notify's id kept). An invalid `email_address` is
about this recipient: `permanent`. `RateLimitError`, 5xx and a failed
connection are retried with backoff; the daily limit hands the rest back
`temporary` with a wait until midnight UTC. Every other 4xx (the key, the
template, trial mode) stops the run with `DeliveryError` and one clear line.
`feedback.permanent_failures` lists the addresses Notify later found undeliverable.

Each message's `((body))` is rendered by the send run (this transport
`SendsOwnBody`: see `provider_body`) and travels as
`OutgoingMessage.provider_body`. Set up from the `notify` settings
(`notify.template_id`, `notify.reply_to_id`, NEWSLETTER_NOTIFY_API_KEY,
NEWSLETTER_NOTIFY_URL).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
from notifications_python_client.errors import APIError
from notifications_python_client.notifications import NotificationsAPIClient

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.ratelimit import Clock, SystemClock
from newsletter.core.setting_parts import Secret
from newsletter.core.settings import Settings
from newsletter.transports.base import (
    DeliveryResult,
    OutgoingMessage,
    ProviderBody,
    Route,
    SettingProblem,
)
from newsletter.transports.halt import Halt, RestLater, send_each
from newsletter.transports.http import RetryPolicy, may_have_arrived
from newsletter.transports.notify.settings import (
    API_KEY_ENV,
    DEFAULT_URL,
    TEMPLATE_SETTING,
    NotifySettings,
)

if TYPE_CHECKING:
    from newsletter.content.issue import Issue

# Notify takes 3,000 requests a minute per key: a few connections keep up with that.
DEFAULT_CONNECTIONS = 4
_ANGLE_LINKS = re.compile(r"<([^<>\s]+)>")

# Given an outgoing message, its body in Notify formatting (see `body`).
BodyFor = Callable[[OutgoingMessage], str]


def notify_client(api_key: Secret, base_url: str, timeout: float = 30.0) -> NotificationsAPIClient:
    """Notify's client, after checking the key has the shape Notify issues."""
    key = api_key.reveal().strip()
    service_id, secret = key[-73:-37], key[-36:]
    if len(key) < 74 or key[-37] != "-" or not (_is_uuid(service_id) and _is_uuid(secret)):
        raise ConfigError(
            f"{API_KEY_ENV} does not look like a GOV.UK Notify API key (name-service id-secret); "
            "copy the whole key from Notify's API integration page"
        )
    return NotificationsAPIClient(key, base_url=base_url.rstrip("/"), timeout=timeout)


class NotifyTransport:
    """Sends each message as one Notify email from the `((subject))`/`((body))` template.

    `body_for` gives a message's `((body))`; by default the one the send run
    attached (`OutgoingMessage.provider_body`).
    """

    name = "notify"
    sends_batch_in_one_request = False

    def __init__(
        self,
        api_key: Secret,
        template_id: str,
        body_for: BodyFor | None = None,
        *,
        base_url: str = DEFAULT_URL,
        email_reply_to_id: str | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        timeout: float = 30.0,
        batch_size: int = 50,
    ) -> None:
        if not _is_uuid(template_id):
            raise ConfigError(
                f"`{TEMPLATE_SETTING}` must be the template's ID from GOV.UK Notify (a UUID "
                "such as f33517ff-2a88-4f6e-b855-c550268ce08a)"
            )
        self.template_id = template_id
        self.body_for = body_for or attached_body
        self.email_reply_to_id = email_reply_to_id
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.batch_size = batch_size
        self.base_url = base_url.rstrip("/")
        self._client = notify_client(api_key, self.base_url, timeout)
        self._halt = Halt()

    @classmethod
    def opener(cls, settings: Settings, clock: Clock) -> Callable[[], NotifyTransport]:
        """New transports for the `notify` settings, one per worker; ConfigError when it is incomplete."""
        notify = NotifySettings.of(settings)
        missing = notify.missing()
        if missing or notify.api_key is None or notify.template_id is None:
            raise ConfigError(
                f'GOV.UK Notify needs {" and ".join(missing)}; see docs/routes.md, "GOV.UK Notify"'
            )
        api_key, template_id = notify.api_key, notify.template_id
        return lambda: cls(
            api_key,
            template_id,
            base_url=notify.base_url,
            email_reply_to_id=notify.reply_to_id,
            clock=clock,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyTransport:
        """One transport for the `notify` settings (see `opener`)."""
        return cls.opener(settings, SystemClock())()

    @staticmethod
    def default_concurrency(settings: Settings) -> int:
        return DEFAULT_CONNECTIONS

    @staticmethod
    def describe(settings: Settings) -> str:
        notify = NotifySettings.of(settings)
        key = f"an API key from {API_KEY_ENV}" if notify.api_key else "NO API key set"
        return (
            f"notify: GOV.UK Notify at {notify.base_url}, template "
            f"{notify.template_id or '(not set)'}, {key}"
        )

    @staticmethod
    def setup_problems(settings: Settings) -> list[SettingProblem]:
        return []  # what it still needs is named by `route` (missing variables)

    @staticmethod
    def route(settings: Settings) -> Route:
        notify = NotifySettings.of(settings)
        template = notify.template_id
        name = f"GOV.UK Notify, template {template}" if template else "GOV.UK Notify"
        return Route(name, tuple(notify.missing()))

    @staticmethod
    def provider_body(settings: Settings, issue: Issue) -> ProviderBody:
        """Each person's `((body))`: the issue in Notify's formatting (`body`)."""
        # Imported here: the renderer brings Jinja2 and premailer, which naming the route
        # or checking the settings never needs.
        from newsletter.transports.notify.body import NotifyRenderer

        return ProviderBody(
            "GOV.UK Notify version (Notify draws it in its own style)",
            NotifyRenderer(settings, issue).body,
        )

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Send each message in turn; one result per message, in order."""
        return send_each(self._halt, messages, self._send_one)

    def close(self) -> None:
        self._client.request_session.close()

    def notification(self, outgoing: OutgoingMessage) -> dict[str, Any]:
        """The arguments of `send_email_notification` for one message."""
        message = outgoing.message
        arguments: dict[str, Any] = {
            "email_address": outgoing.recipient,
            "template_id": self.template_id,
            "personalisation": {
                "subject": str(message.get("Subject", "")),
                "body": self.body_for(outgoing),
            },
            "reference": outgoing.message_id,
        }
        unsubscribe = one_click_url(str(message.get("List-Unsubscribe", "")))
        if unsubscribe:
            arguments["one_click_unsubscribe_url"] = unsubscribe
        if self.email_reply_to_id:
            arguments["email_reply_to_id"] = self.email_reply_to_id
        return arguments

    # -- one message ---------------------------------------------------------

    def _send_one(self, outgoing: OutgoingMessage) -> DeliveryResult:
        arguments = self.notification(outgoing)
        detail = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                answer = self._client.send_email_notification(**arguments)
            except APIError as error:
                cause = error.__cause__
                if (
                    getattr(error, "response", None) is None
                    and isinstance(cause, requests.RequestException)
                    and may_have_arrived(cause)
                ):
                    # The client reports a lost answer as HTTP 503; but the request had
                    # gone, so Notify may have taken it: never post it again here.
                    return DeliveryResult(
                        outgoing.recipient,
                        outgoing.message_id,
                        "unknown",
                        f"GOV.UK Notify was sent the request, then gave no answer "
                        f"({type(cause).__name__}); it may have been sent, so it is not "
                        "sent again unless asked",
                    )
                status = error.status_code
                kind, text = error_of(error)
                if status == 429 and kind == "TooManyRequestsError":
                    raise RestLater(
                        f"GOV.UK Notify's daily limit is reached ({text}); the rest go after "
                        "midnight UTC",
                        self._until_midnight_utc(),
                    ) from None
                if status == 429 or status >= 500:
                    detail = f"GOV.UK Notify answered HTTP {status} ({kind}: {text})"
                    wait = self.retry.backoff(attempt)
                    if attempt < self.retry.attempts and wait <= self.retry.max_wait:
                        self.clock.sleep(wait)
                        continue
                    raise RestLater(detail, wait) from None
                if status == 400 and kind == "ValidationError" and text.startswith("email_address"):
                    return DeliveryResult(
                        outgoing.recipient,
                        outgoing.message_id,
                        "failed-permanent",
                        f"GOV.UK Notify refused the address ({text})",
                    )
                raise DeliveryError(self._refusal(status, kind, text)) from None
            notification_id = answer.get("id") if isinstance(answer, dict) else None
            return DeliveryResult(
                outgoing.recipient, outgoing.message_id, "sent", "", notification_id
            )
        raise RestLater(detail, None)  # pragma: no cover - the loop always returns or raises

    def _refusal(self, status: int, kind: str, text: str) -> str:
        said = f"GOV.UK Notify refused the email (HTTP {status}, {kind}: {text})"
        lowered = text.lower()
        if status == 403 and "clock" in lowered:
            advice = "this computer's clock is more than 30 seconds out; correct it"
        elif status == 403:
            advice = f"check {API_KEY_ENV} is a current key for this Notify service"
        elif "team-only" in lowered or "trial mode" in lowered:
            advice = (
                "your Notify service can only send to its team: use a live API key, and ask "
                "Notify to make the service live"
            )
        elif "template" in lowered:
            advice = f"check `{TEMPLATE_SETTING}` names an email template of this service"
        elif "personalisation" in lowered:
            advice = (
                "the Notify template must have subject ((subject)) and body ((body)) and no "
                "other placeholders"
            )
        else:
            advice = "the request was refused; this is a bug, please report it"
        return f"{said}: {advice}"

    def _until_midnight_utc(self) -> float:
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        return (midnight - now).total_seconds()


def attached_body(outgoing: OutgoingMessage) -> str:
    """The `((body))` the send run attached to the message."""
    if outgoing.provider_body is None:
        raise DeliveryError(
            f"the message to {outgoing.recipient} carries no GOV.UK Notify body; "
            "this is a bug, please report it"
        )
    return outgoing.provider_body


def one_click_url(list_unsubscribe: str) -> str | None:
    """The https address in a List-Unsubscribe header (RFC 2369: `<mailto:...>, <https://...>`)."""
    return next(
        (link for link in _ANGLE_LINKS.findall(list_unsubscribe) if link.startswith("https://")),
        None,
    )


def error_of(error: APIError) -> tuple[str, str]:
    """Notify's error type and message from `{"errors": [{"error", "message"}]}`."""
    message = error.message
    if isinstance(message, list) and message and isinstance(message[0], dict):
        first = message[0]
        return str(first.get("error", "Error")), " ".join(str(first.get("message", "")).split())
    return "Error", " ".join(str(message).split())


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
