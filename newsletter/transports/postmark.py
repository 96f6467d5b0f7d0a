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
- 401 missing or wrong token; 422 `{ErrorCode, Message}` for a request it
  cannot process; 429 rate limit; 500/503 its own trouble.
- Error codes: 10 bad or missing token, 100 maintenance, 300 invalid email
  request, 400 sender signature not found, 401 sender signature not
  confirmed, 405 not allowed to send, 406 inactive recipient (hard bounce,
  spam complaint or manual suppression), 410 too many batch messages,
  412 account pending, 413 account may not send, 429 rate limit exceeded.

Our mapping: 406 and 300 are about this recipient or message: `failed-permanent`.
Codes about the account or sender (10, 400, 401, 405, 412, 413) say nothing
about the recipient, so they are never `failed-permanent`: when a whole batch gets
them the run stops with `DeliveryError`. Anything else is `failed-temporary`, so an
unknown code can never put a practitioner on the suppression list.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from newsletter.errors import ConfigError, DeliveryError
from newsletter.message import format_address
from newsletter.settings import ProviderSettings, Settings
from newsletter.transports.base import DeliveryResult, DeliveryStatus, OutgoingMessage
from newsletter.transports.http import (
    ApiClient,
    BatchApiTransport,
    GaveUp,
    RetryPolicy,
    Sleep,
    message_parts,
    temporary_for_all,
    to_name_for,
)

MAX_BATCH = 500
PERMANENT_CODES = frozenset({300, 406})
ACCOUNT_CODES = frozenset({10, 400, 401, 405, 412, 413})
TOKEN_ENV = "NEWSLETTER_POSTMARK_TOKEN"


class PostmarkTransport(BatchApiTransport):
    """Sends through Postmark's `/email/batch`, splitting into batches of at most 500."""

    name = "postmark"

    def __init__(
        self,
        provider: ProviderSettings,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        if provider.api_key is None:
            raise ConfigError(
                f"the postmark transport needs a server API token: set {TOKEN_ENV} in the "
                "environment (never in newsletter.yaml)"
            )
        token = provider.api_key.reveal()
        self.message_stream = provider.options.get("message_stream", "broadcast")
        client = ApiClient(
            "Postmark",
            provider.base_url,
            headers={"X-Postmark-Server-Token": token},
            secrets=[token],
            retry=retry,
            sleep=sleep,
            timeout=timeout,
            key_hint=TOKEN_ENV,
        )
        super().__init__(provider, MAX_BATCH, client)

    @classmethod
    def from_settings(cls, settings: Settings) -> PostmarkTransport:
        return cls(settings.providers[cls.name])

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
        if isinstance(answer, GaveUp):
            return temporary_for_all(chunk, answer)
        if answer.status == 200 and isinstance(answer.body, list):
            return self._per_message(chunk, answer.body)
        body = answer.body if isinstance(answer.body, dict) else {}
        code = body.get("ErrorCode")
        text = self._client.scrub(str(body.get("Message") or answer.text))
        if code in ACCOUNT_CODES:
            raise DeliveryError(
                f"Postmark refused to send (error {code}: {text}); check the sender "
                "signature and the account in Postmark"
            )
        status: DeliveryStatus = (
            "failed-permanent"
            if 400 <= answer.status < 500 and code not in (100, 429)
            else "failed-temporary"
        )
        detail = f"Postmark refused the batch (HTTP {answer.status}, error {code}: {text})"
        return [DeliveryResult(m.recipient, m.message_id, status, detail) for m in chunk]

    def _per_message(
        self, chunk: Sequence[OutgoingMessage], answers: list[Any]
    ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        account_codes: set[int] = set()
        for index, outgoing in enumerate(chunk):
            item = (
                answers[index]
                if index < len(answers) and isinstance(answers[index], dict)
                else None
            )
            if item is None:
                results.append(
                    DeliveryResult(
                        outgoing.recipient,
                        outgoing.message_id,
                        "failed-temporary",
                        "Postmark's answer did not mention this message",
                    )
                )
                continue
            code = item.get("ErrorCode")
            text = self._client.scrub(str(item.get("Message", "")))
            if code == 0:
                results.append(
                    DeliveryResult(
                        outgoing.recipient, outgoing.message_id, "sent", "", item.get("MessageID")
                    )
                )
                continue
            if code in ACCOUNT_CODES:
                account_codes.add(code)
            status: DeliveryStatus = (
                "failed-permanent" if code in PERMANENT_CODES else "failed-temporary"
            )
            results.append(
                DeliveryResult(
                    outgoing.recipient,
                    outgoing.message_id,
                    status,
                    f"Postmark error {code}: {text}",
                )
            )
        if account_codes and not any(r.ok for r in results):
            raise DeliveryError(
                f"Postmark refused every message in the batch ({results[0].detail}); check "
                "the sender signature and the account in Postmark"
            )
        return results
