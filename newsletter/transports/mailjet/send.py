"""Mailjet's Send API v3.1: up to 50 messages per API call.

The contract relied on (Mailjet docs: "Send API v3.1",
dev.mailjet.com/email/guides/send-api-v31 and
dev.mailjet.com/email/reference/send-emails; "API status codes",
dev.mailjet.com/docs/email-api/email_api_overview/status_codes):
- `POST {base}/v3.1/send` with HTTP Basic auth (API key : secret key) and
  a JSON body `{"Messages": [...]}` of at most 50 messages, each
  `{From: {Email, Name}, To: [{Email, Name}], Subject, TextPart, HTMLPart,
  ReplyTo: {Email, Name}, Headers: {name: value}, CustomID}`.
- The answer lists the messages in the order sent: `{"Messages": [{"Status":
  "success"|"error", "CustomID", "To": [{"Email", "MessageUUID",
  "MessageID", "MessageHref"}], "Errors": [{"ErrorIdentifier",
  "ErrorCode", "StatusCode", "ErrorMessage", "ErrorRelatedTo"}]}]}`.
  "In case of errors on one or several of the messages, the API will not
  stop the processing of other successful messages": the call then answers
  HTTP 400, but the per-message list still says which went out, so we read
  it rather than failing the whole batch.
- 401 wrong key pair; 429 too many calls per minute; 500 server trouble.

- Each error names the field it is about in `ErrorRelatedTo` (e.g.
  `["To[0].Email"]` for an invalid recipient address, `["From.Email"]`,
  `["HTMLPart"]`).

Our mapping: a message `success` is sent; an error whose StatusCode is 429
or 5xx is temporary. An error about the recipient (every `ErrorRelatedTo`
points into `To`, `Cc` or `Bcc`) is `failed-permanent`. Any other error (the
sender, the content, the headers) is the same for everyone on the list, so
the run stops (`DeliveryError`) and nobody is suppressed; messages Mailjet
did accept are still recorded as sent. A 4xx without a per-message list
stops the run too. A request sent and never answered is `unknown`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from email.utils import parseaddr
from typing import Any

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.settings import Settings
from newsletter.transports.base import DeliveryResult, OutgoingMessage
from newsletter.transports.http import (
    ApiClient,
    BatchApiTransport,
    GaveUp,
    Lost,
    RetryPolicy,
    Sleep,
    item_of,
    message_parts,
    temporary_for_all,
    to_name_for,
    unknown_for_all,
)
from newsletter.transports.mailjet.settings import KEY_ENV, SECRET_ENV, URL_ENV
from newsletter.transports.provider_settings import ProviderSettings

MAX_BATCH = 50
_RECIPIENT_FIELDS = frozenset({"To", "Cc", "Bcc"})


class MailjetTransport(BatchApiTransport):
    """Sends through Mailjet's `/v3.1/send`, splitting into batches of at most 50."""

    name = "mailjet"
    key_envs = (KEY_ENV, SECRET_ENV)
    url_env = URL_ENV

    def __init__(
        self,
        provider: ProviderSettings,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        client = mailjet_client(
            provider, "the mailjet transport", retry=retry, sleep=sleep, timeout=timeout
        )
        super().__init__(provider, MAX_BATCH, client)

    @classmethod
    def from_settings(cls, settings: Settings) -> MailjetTransport:
        return cls(ProviderSettings.of(settings, cls.name))

    def payload(self, outgoing: OutgoingMessage) -> dict[str, Any]:
        """One message in Mailjet's v3.1 JSON shape."""
        parts = message_parts(outgoing.message)
        to_name = to_name_for(parts, outgoing.recipient)
        item: dict[str, Any] = {
            "From": _contact(parts.from_name, parts.from_address),
            "To": [_contact(to_name, outgoing.recipient)],
            "Subject": parts.subject,
            "TextPart": parts.text,
            "HTMLPart": parts.html,
            "Headers": dict(parts.headers),
            "CustomID": outgoing.message_id.strip("<>"),
        }
        if parts.reply_to:
            name, address = parseaddr(parts.reply_to)
            item["ReplyTo"] = _contact(name, address)
        return item

    def _send_chunk(self, chunk: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        answer = self._client.post_json(
            "/v3.1/send", {"Messages": [self.payload(m) for m in chunk]}
        )
        if isinstance(answer, Lost):
            return unknown_for_all(chunk, answer)
        if isinstance(answer, GaveUp):
            return temporary_for_all(chunk, answer)
        body = answer.body if isinstance(answer.body, dict) else {}
        per_message = body.get("Messages")
        if isinstance(per_message, list) and per_message:
            return self._per_message(chunk, per_message)
        text = self._client.scrub(str(body.get("ErrorMessage") or answer.text))
        if 400 <= answer.status < 500:
            raise _refusal(f"HTTP {answer.status}: {text}")
        detail = f"Mailjet refused the request (HTTP {answer.status}: {text})"
        return [
            DeliveryResult(m.recipient, m.message_id, "failed-temporary", detail) for m in chunk
        ]

    def _per_message(
        self, chunk: Sequence[OutgoingMessage], answers: list[Any]
    ) -> list[DeliveryResult]:
        return self._judged(
            chunk, [self._verdict(m, item_of(answers, i) or {}) for i, m in enumerate(chunk)]
        )

    def _verdict(
        self, outgoing: OutgoingMessage, item: dict[str, Any]
    ) -> DeliveryResult | DeliveryError:
        """What Mailjet's answer about one message means: sent, failed, or the run stops."""
        if item.get("Status") == "success":
            to = item.get("To") or [{}]
            provider_id = to[0].get("MessageUUID") if isinstance(to[0], dict) else None
            return DeliveryResult(outgoing.recipient, outgoing.message_id, "sent", "", provider_id)
        errors = [e for e in item.get("Errors") or [] if isinstance(e, dict)]
        text = self._client.scrub(
            "; ".join(
                f"{e.get('ErrorCode', '')} {e.get('ErrorMessage', '')}".strip() for e in errors
            )
            or "no reason given"
        )
        temporary = not errors or any(_is_temporary(e) for e in errors)
        if not temporary and not all(_about_recipient(e) for e in errors):
            return _refusal(text)
        return DeliveryResult(
            outgoing.recipient,
            outgoing.message_id,
            "failed-temporary" if temporary else "failed-permanent",
            f"Mailjet error: {text}",
        )


def _is_temporary(error: dict[str, Any]) -> bool:
    """Too many calls (429) or Mailjet's own trouble (5xx): try again later."""
    code = error.get("StatusCode")
    return isinstance(code, int) and (code == 429 or code >= 500)


def mailjet_client(
    provider: ProviderSettings,
    purpose: str,
    *,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    timeout: float = 30.0,
) -> ApiClient:
    """The client for Mailjet's API, sending and polling alike; ConfigError without the keys.

    `purpose` says what needs the keys, e.g. "reading Mailjet's bounces".
    """
    if provider.api_key is None or provider.api_secret is None:
        raise ConfigError(
            f"{purpose} needs a Mailjet API key and secret key: set {KEY_ENV} and "
            f"{SECRET_ENV} in the environment (never in newsletter.yaml)"
        )
    auth = (provider.api_key.reveal(), provider.api_secret.reveal())
    return ApiClient(
        "Mailjet",
        provider.base_url,
        headers={},
        auth=auth,
        secrets=auth,
        retry=retry,
        sleep=sleep,
        timeout=timeout,
        key_hint=f"{KEY_ENV} and {SECRET_ENV}",
    )


def _about_recipient(error: dict[str, Any]) -> bool:
    """Does this Mailjet error point only at the recipient's address (`To[0].Email`, ...)?"""
    related = error.get("ErrorRelatedTo")
    return (
        isinstance(related, list)
        and bool(related)
        and all(
            isinstance(field, str) and field.split("[", 1)[0].split(".", 1)[0] in _RECIPIENT_FIELDS
            for field in related
        )
    )


def _refusal(what: str) -> DeliveryError:
    """The run stops: Mailjet refused something that is the same for everyone on the list."""
    return DeliveryError(
        f"Mailjet refused to send ({what}); this is not about any one recipient, so nobody "
        "was marked as failed or suppressed. Check the message and its sender in Mailjet, "
        "then run the same command again"
    )


def _contact(name: str, address: str) -> dict[str, str]:
    return {"Email": address, "Name": name} if name else {"Email": address}
