"""What Mailjet tells us after sending: its Messages API (polled) and its Event API (pushed).

Messages API (dev.mailjet.com/email/reference/messages):
- `GET {base}/v3/REST/message` with HTTP Basic auth (API key : secret key)
  and `MessageStatus` (10 hard bounced, 9 soft bounced, 6 spam),
  `ShowContactAlt=true` (the recipient's address as `ContactAlt`),
  `ShowCustomID=true`, `Limit` (at most 1000) and `Offset`. The answer is
  `{"Count": n, "Data": [{"ID", "ContactAlt", "CustomID", "Status",
  "ArrivedAt", ...}], "Total": n}`. Our transport sends our Message-ID as
  the CustomID, so a Mailjet event names its issue.
- 401/403 mean the keys are wrong; 429 and 5xx are retried (`ApiClient`).

Event API (dev.mailjet.com/email/guides/webhooks/): one JSON event, or with
grouping (Version 2) a JSON array of them, authenticated by basic auth in
the URL. Every event has `event` and `email`. We act on `bounce` with
`hard_bounce: true`, `spam` (a feedback-loop complaint) and `unsub`.
`blocked` is Mailjet declining to send (often because of an earlier bounce,
already reported), so it is not a reason of its own. Mailjet retries
anything but a 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from newsletter.core.errors import NewsletterError, WebhookPayloadError
from newsletter.inbox.classify import Classification, EventKind, InboxEvent, issue_for_message_id
from newsletter.transports.feedback import (
    CLASS_OF,
    BounceApi,
    PollRequest,
    ProviderRecord,
    Suppression,
    json_object,
    one_suppression,
    text_field,
)
from newsletter.transports.mailjet.send import mailjet_client
from newsletter.transports.provider_settings import ProviderSettings

NAME = "mailjet"
PAGE = 1000
MAX_PAGES = 50
# Mailjet MessageStatus filter values and what they mean for us.
STATUSES: dict[int, EventKind] = {10: "hard-bounce", 6: "complaint", 9: "soft-bounce"}
# Event API events we act on, and our reason word for each.
_WEBHOOK_REASONS = {"spam": "complaint", "unsub": "unsubscribed"}


def poll_bounces(request: PollRequest) -> Iterator[ProviderRecord]:
    """Mailjet's hard and soft bounces and complaints, a page of each status at a time."""
    provider = ProviderSettings.of(request.settings, NAME)
    client = mailjet_client(
        provider, "reading Mailjet's bounces", retry=request.retry, sleep=request.sleep
    )
    try:
        for status, kind in STATUSES.items():
            for page in range(MAX_PAGES):
                params: dict[str, str | int] = {
                    "MessageStatus": status,
                    "ShowContactAlt": "true",
                    "ShowCustomID": "true",
                    "Limit": PAGE,
                    "Offset": page * PAGE,
                }
                data = json_object(client, client.get_json("/v3/REST/message", params)).get("Data")
                if not isinstance(data, list):
                    raise NewsletterError("Mailjet's message list came back without Data")
                for item in data:
                    record = _record(item, status, kind, request.message_id_domain)
                    if record is not None:
                        yield record
                if len(data) < PAGE:
                    break
    finally:
        client.close()


def _record(
    item: Any, status: int, kind: EventKind, message_id_domain: str
) -> ProviderRecord | None:
    if not isinstance(item, dict) or "ID" not in item:
        return None
    address = str(item.get("ContactAlt") or "").strip() or None
    key = f"mailjet:{item['ID']}:{status}"
    if address is None:
        return ProviderRecord(
            key, "", "", Classification("unclassified", reason="a Mailjet record with no address")
        )
    custom_id = str(item.get("CustomID") or "").strip()
    original = f"<{custom_id}>" if custom_id else None
    event = InboxEvent(
        kind,
        address,
        action=str(item.get("Status") or ""),
        issue_id=issue_for_message_id(original, message_id_domain),
        original_message_id=original,
    )
    classification = Classification(CLASS_OF[kind], (event,))
    return ProviderRecord(key, address, str(item.get("Subject") or ""), classification)


def suppressions(payload: Any) -> list[Suppression]:
    """The suppressions in one Mailjet Event API body: one event or an array of them."""
    events = payload if isinstance(payload, list) else [payload]
    found: list[Suppression] = []
    for event in events:
        if not isinstance(event, dict):
            raise WebhookPayloadError("a Mailjet event is a JSON object")
        kind = text_field(event, "event")
        if kind == "bounce" and event.get("hard_bounce") is True:
            found += one_suppression(event, "email", "hard-bounce", NAME)
        elif kind in _WEBHOOK_REASONS:
            found += one_suppression(event, "email", _WEBHOOK_REASONS[kind], NAME)
    return found


BOUNCE_API = BounceApi(lambda settings: ProviderSettings.of(settings, NAME).base_url, poll_bounces)
