"""What Postmark tells us after sending: its Bounce API (polled) and its webhooks (pushed).

Bounce API (postmarkapp.com/developer/api/bounce-api):
- `GET {base}/bounces?count=N&offset=M` with `Accept: application/json` and
  `X-Postmark-Server-Token`. `count` (at most 500) and `offset` are
  required, and count + offset may not pass 10,000. The answer is
  `{"TotalCount": n, "Bounces": [{"ID", "Type", "TypeCode", "Email",
  "BouncedAt", "Details", "Inactive", "MessageID", "Subject", ...}]}`, newest
  first, so paging stops at the first page holding nothing new.
- Our mapping of `Type`: HardBounce and BadEmailAddress are hard bounces;
  SpamComplaint a complaint; Transient, SoftBounce and DnsError soft
  bounces (recorded only); AutoResponder an auto-reply; Unsubscribe an
  unsubscribe request. Any other type (Blocked, SpamNotification,
  ManuallyDeactivated, Unknown, ...) is listed for a person, not acted on.
  Postmark's MessageID is its own, so Postmark events name no issue.
- 401/403 mean the token is wrong; 429 and 5xx are retried (`ApiClient`).

Webhooks (postmarkapp.com/developer/webhooks/webhooks-overview): one JSON
object per event, authenticated by HTTP basic auth written into the webhook
URL (`https://user:password@host/webhooks/postmark`). We act on:
- `RecordType: Bounce` with `Type: HardBounce` (the address does not exist);
  other bounce types (soft, transient, auto-responder, ...) are not final.
- `RecordType: SpamComplaint` (transactional streams).
- `RecordType: SubscriptionChange` with `SuppressSending: true`: Postmark
  suppressed the address on a broadcast stream. `SuppressionReason` is
  `HardBounce`, `SpamComplaint` or `ManualSuppression`; a recipient who used
  Postmark's own unsubscribe link arrives as `ManualSuppression` with
  `Origin: Recipient`. A reactivation (`SuppressSending: false`) is not
  copied: suppressed.csv is the team's list, changed back only by them.
Postmark retries anything but a 200 (and stops at a 403), so events we do
not act on are answered 200 too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from newsletter.core.errors import NewsletterError, WebhookPayloadError
from newsletter.inbox.classify import Classification, EventKind, InboxEvent
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
from newsletter.transports.postmark.send import postmark_client
from newsletter.transports.provider_settings import ProviderSettings

NAME = "postmark"
PAGE = 500
LIMIT = 10_000
KINDS: dict[str, EventKind] = {
    "HardBounce": "hard-bounce",
    "BadEmailAddress": "hard-bounce",
    "SpamComplaint": "complaint",
    "Transient": "soft-bounce",
    "SoftBounce": "soft-bounce",
    "DnsError": "soft-bounce",
    "AutoResponder": "auto-reply",
    "Unsubscribe": "unsubscribe",
}
_SUPPRESSION_REASONS = {"HardBounce": "hard-bounce", "SpamComplaint": "complaint"}


def poll_bounces(request: PollRequest) -> Iterator[ProviderRecord]:
    """Postmark's bounces, newest first, until a page holds nothing new."""
    provider = ProviderSettings.of(request.settings, NAME)
    client = postmark_client(
        provider, "reading Postmark's bounces", retry=request.retry, sleep=request.sleep
    )
    try:
        offset = 0
        while offset < LIMIT:
            count = min(PAGE, LIMIT - offset)
            body = json_object(
                client, client.get_json("/bounces", {"count": count, "offset": offset})
            )
            bounces, total = body.get("Bounces"), body.get("TotalCount")
            if not isinstance(bounces, list) or not isinstance(total, int):
                raise NewsletterError("Postmark's bounce list came back without Bounces/TotalCount")
            records = [r for r in map(_record, bounces) if r is not None]
            # Asked before the records are handed on (and then processed, so known).
            new = sum(not request.is_known(r.key) for r in records)
            yield from records
            offset += len(bounces)
            if not bounces or offset >= total or new == 0:
                break
    finally:
        client.close()


def _record(bounce: Any) -> ProviderRecord | None:
    if not isinstance(bounce, dict) or "ID" not in bounce:
        return None
    bounce_type = str(bounce.get("Type") or "")
    address = str(bounce.get("Email") or "").strip() or None
    kind = KINDS.get(bounce_type)
    detail = " ".join(str(bounce.get("Details") or bounce.get("Description") or "").split())[:300]
    if kind is None or address is None:
        classification = Classification(
            "unclassified", reason=f"a Postmark bounce of type {bounce_type or '?'}: {detail}"
        )
    else:
        event = InboxEvent(kind, address, action=bounce_type, detail=detail)
        classification = Classification(CLASS_OF[kind], (event,))
    subject = str(bounce.get("Subject") or "")
    return ProviderRecord(f"postmark:{bounce['ID']}", address or "", subject, classification)


def suppressions(payload: Any) -> list[Suppression]:
    """The suppressions in one Postmark webhook body (empty for events we don't act on)."""
    if not isinstance(payload, dict):
        raise WebhookPayloadError("a Postmark webhook body is one JSON object")
    record_type = text_field(payload, "RecordType")
    if record_type == "Bounce":
        if text_field(payload, "Type") != "HardBounce":
            return []
        return one_suppression(payload, "Email", "hard-bounce", NAME)
    if record_type == "SpamComplaint":
        return one_suppression(payload, "Email", "complaint", NAME)
    if record_type == "SubscriptionChange" and payload.get("SuppressSending") is True:
        return one_suppression(payload, "Recipient", _suppression_reason(payload), NAME)
    return []


def _suppression_reason(payload: dict[str, Any]) -> str:
    reason = _SUPPRESSION_REASONS.get(text_field(payload, "SuppressionReason"))
    if reason is not None:
        return reason
    return "unsubscribed" if text_field(payload, "Origin") == "Recipient" else "manual"


BOUNCE_API = BounceApi(lambda settings: ProviderSettings.of(settings, NAME).base_url, poll_bounces)
