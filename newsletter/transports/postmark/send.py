"""Postmark's batch endpoint: up to 500 messages per API call.

The contract relied on (Postmark developer docs: "Send batch emails",
postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails, and
"API overview", postmarkapp.com/developer/api/overview):
- `POST {base}/email/batch`, headers `Accept` and `Content-Type:
  application/json` and `X-Postmark-Server-Token`; body a JSON array of at
  most 500 messages `{From, To, Subject, TextBody, HtmlBody, ReplyTo,
  Headers: [{Name, Value}], MessageStream}`. Bulk mail goes through a
  broadcast stream (`broadcast` unless `providers.postmark.message_stream`).
- HTTP 200 even when some messages fail: an array in the order sent, each
  `{ErrorCode, Message, MessageID, To, SubmittedAt}`, ErrorCode 0 = accepted.
  So a partly failed batch records exactly the failed recipients.
- 401 missing or wrong token; 413 the request is over the size limit (10 MB);
  422 `{ErrorCode, Message}` for a request it cannot process; 429 rate
  limit; 500/503 its own trouble.
- Error codes (API overview, "API error codes"): 10 bad or missing token,
  100 maintenance, 300 invalid email request (its Message says which field:
  "Invalid 'To' address", "Invalid 'From' address", no body, ...), 400
  sender signature not found, 401 sender signature not confirmed, 402
  invalid JSON, 403 incompatible JSON, 405 not allowed to send, 406 inactive
  recipient (hard bounce, spam complaint or manual suppression), 409 JSON
  required, 410 too many batch messages, 411 forbidden attachment type, 412
  account pending, 413 account may not send, 429 rate limit exceeded.

Our mapping. About this recipient, `failed-permanent`: 406, and 300 when its
Message names the 'To' address. Temporary: 100 and 429 (and 5xx, retried
first). Everything else (the sender, the account, the request, the message,
an HTTP 413, a code we do not know) is the same for everyone on the list, so
it is never anyone's failure: the run stops with `DeliveryError` and
suppresses nobody; messages of the batch Postmark did accept are still
recorded as sent. A request sent and never answered is `unknown`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.settings import Settings
from newsletter.render.message import format_address
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
from newsletter.transports.postmark.settings import TOKEN_ENV, URL_ENV
from newsletter.transports.provider_settings import ProviderSettings

MAX_BATCH = 500
INACTIVE_RECIPIENT = 406
INVALID_REQUEST = 300  # about the recipient only when its Message names the 'To' address
TEMPORARY_CODES = frozenset({100, 429})
ACCOUNT_CODES = frozenset({10, 400, 401, 405, 412, 413})


class PostmarkTransport(BatchApiTransport):
    """Sends through Postmark's `/email/batch`, splitting into batches of at most 500."""

    name = "postmark"
    key_envs = (TOKEN_ENV,)
    url_env = URL_ENV

    def __init__(
        self,
        provider: ProviderSettings,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        self.message_stream = provider.options.get("message_stream", "broadcast")
        client = postmark_client(
            provider, "the postmark transport", retry=retry, sleep=sleep, timeout=timeout
        )
        super().__init__(provider, MAX_BATCH, client)

    @classmethod
    def from_settings(cls, settings: Settings) -> PostmarkTransport:
        return cls(ProviderSettings.of(settings, cls.name))

    def payload(self, outgoing: OutgoingMessage) -> dict[str, Any]:
        """One message in Postmark's JSON shape."""
        parts = message_parts(outgoing.message)
        to_name = to_name_for(parts, outgoing.recipient)
        item: dict[str, Any] = {
            "From": format_address(parts.from_name, parts.from_address),
            "To": format_address(to_name, outgoing.recipient),
            "Subject": parts.subject,
            "TextBody": parts.text,
            "HtmlBody": parts.html,
            "Headers": [{"Name": k, "Value": v} for k, v in parts.headers.items()],
            "MessageStream": self.message_stream,
        }
        if parts.reply_to:
            item["ReplyTo"] = parts.reply_to
        return item

    def _send_chunk(self, chunk: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        answer = self._client.post_json("/email/batch", [self.payload(m) for m in chunk])
        if isinstance(answer, Lost):
            return unknown_for_all(chunk, answer)
        if isinstance(answer, GaveUp):
            return temporary_for_all(chunk, answer)
        if answer.status == 200 and isinstance(answer.body, list):
            return self._per_message(chunk, answer.body)
        body = answer.body if isinstance(answer.body, dict) else {}
        code = body.get("ErrorCode")
        text = self._client.scrub(str(body.get("Message") or answer.text))
        detail = f"Postmark refused the batch (HTTP {answer.status}, error {code}: {text})"
        if answer.status < 400 or code in TEMPORARY_CODES:
            return [
                DeliveryResult(m.recipient, m.message_id, "failed-temporary", detail) for m in chunk
            ]
        if len(chunk) == 1 and _about_recipient(code, text):
            (only,) = chunk
            return [DeliveryResult(only.recipient, only.message_id, "failed-permanent", detail)]
        raise _refusal(f"HTTP {answer.status}, error {code}: {text}", code)

    def _per_message(
        self, chunk: Sequence[OutgoingMessage], answers: list[Any]
    ) -> list[DeliveryResult]:
        return self._judged(
            chunk, [self._verdict(m, item_of(answers, i)) for i, m in enumerate(chunk)]
        )

    def _verdict(
        self, outgoing: OutgoingMessage, item: dict[str, Any] | None
    ) -> DeliveryResult | DeliveryError:
        """What Postmark's answer about one message means: sent, failed, or the run stops."""
        recipient, message_id = outgoing.recipient, outgoing.message_id
        if item is None:
            detail = "Postmark's answer did not mention this message"
            return DeliveryResult(recipient, message_id, "failed-temporary", detail)
        code = item.get("ErrorCode")
        if code == 0:
            return DeliveryResult(recipient, message_id, "sent", "", item.get("MessageID"))
        text = self._client.scrub(str(item.get("Message", "")))
        if code in TEMPORARY_CODES:
            return DeliveryResult(
                recipient, message_id, "failed-temporary", f"Postmark error {code}: {text}"
            )
        if _about_recipient(code, text):
            return DeliveryResult(
                recipient, message_id, "failed-permanent", f"Postmark error {code}: {text}"
            )
        return _refusal(f"error {code}: {text}", code)


def postmark_client(
    provider: ProviderSettings,
    purpose: str,
    *,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    timeout: float = 30.0,
) -> ApiClient:
    """The client for Postmark's API, sending and polling alike; ConfigError without a token.

    `purpose` says what needs the token, e.g. "reading Postmark's bounces".
    """
    if provider.api_key is None:
        raise ConfigError(
            f"{purpose} needs a Postmark server API token: set {TOKEN_ENV} in the environment "
            "(never in newsletter.yaml)"
        )
    token = provider.api_key.reveal()
    return ApiClient(
        "Postmark",
        provider.base_url,
        headers={"X-Postmark-Server-Token": token},
        secrets=[token],
        retry=retry,
        sleep=sleep,
        timeout=timeout,
        key_hint=TOKEN_ENV,
    )


def _about_recipient(code: object, text: str) -> bool:
    """Is this Postmark error about the recipient (never about the sender or the message)?"""
    return code == INACTIVE_RECIPIENT or (code == INVALID_REQUEST and "'To'" in text)


def _refusal(what: str, code: object) -> DeliveryError:
    """The run stops: Postmark refused something that is the same for everyone on the list."""
    check = (
        "the sender signature and the account in Postmark"
        if code in ACCOUNT_CODES
        else "the message and its From address"
    )
    return DeliveryError(
        f"Postmark refused to send ({what}); this is not about any one recipient, so nobody "
        f"was marked as failed or suppressed. Check {check}, then run the same command again"
    )
