"""Provider webhooks read into suppressions: which address to stop mailing, and why.

Pure functions from a parsed JSON body to `Suppression`s; `serve.py` checks
the credentials, writes suppressed.csv and records the events.

Postmark (https://postmarkapp.com/developer/webhooks/webhooks-overview) POSTs
one JSON object per event, authenticated by HTTP basic auth written into the
webhook URL (`https://user:password@host/webhooks/postmark`). We act on:
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

Mailjet (Event API, https://dev.mailjet.com/email/guides/webhooks/) POSTs one
JSON event, or with grouping (Version 2) a JSON array of them, authenticated
the same way by basic auth in the URL. Every event has `event` and `email`.
We act on `bounce` with `hard_bounce: true`, `spam` (a feedback-loop
complaint) and `unsub`. `blocked` is Mailjet declining to send (often because
of an earlier bounce, already reported), so it is not a reason of its own.
Mailjet retries anything but a 200.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from newsletter.core.errors import NewsletterError

PROVIDERS = ("postmark", "mailjet")


class WebhookPayloadError(NewsletterError):
    """A webhook body is not the JSON shape its provider documents."""


@dataclass(frozen=True)
class Suppression:
    """One address a provider says must not be mailed again, with our reason word."""

    address: str
    reason: str  # hard-bounce, complaint, unsubscribed or manual (SUPPRESSION_REASONS)
    provider: str


_POSTMARK_SUPPRESSION_REASONS = {"HardBounce": "hard-bounce", "SpamComplaint": "complaint"}


def _text(event: Mapping[str, Any], field: str) -> str:
    value = event.get(field)
    return value.strip() if isinstance(value, str) else ""


def postmark_suppressions(payload: Any) -> list[Suppression]:
    """The suppressions in one Postmark webhook body (empty for events we don't act on)."""
    if not isinstance(payload, dict):
        raise WebhookPayloadError("a Postmark webhook body is one JSON object")
    record_type = _text(payload, "RecordType")
    if record_type == "Bounce":
        if _text(payload, "Type") != "HardBounce":
            return []
        return _one(payload, "Email", "hard-bounce", "postmark")
    if record_type == "SpamComplaint":
        return _one(payload, "Email", "complaint", "postmark")
    if record_type == "SubscriptionChange":
        if payload.get("SuppressSending") is not True:
            return []
        why = _text(payload, "SuppressionReason")
        reason = _POSTMARK_SUPPRESSION_REASONS.get(why)
        if reason is None:
            by_recipient = _text(payload, "Origin") == "Recipient"
            reason = "unsubscribed" if by_recipient else "manual"
        return _one(payload, "Recipient", reason, "postmark")
    return []


def mailjet_suppressions(payload: Any) -> list[Suppression]:
    """The suppressions in one Mailjet Event API body: one event or an array of them."""
    events = payload if isinstance(payload, list) else [payload]
    found: list[Suppression] = []
    for event in events:
        if not isinstance(event, dict):
            raise WebhookPayloadError("a Mailjet event is a JSON object")
        kind = _text(event, "event")
        if kind == "bounce" and event.get("hard_bounce") is True:
            found += _one(event, "email", "hard-bounce", "mailjet")
        elif kind == "spam":
            found += _one(event, "email", "complaint", "mailjet")
        elif kind == "unsub":
            found += _one(event, "email", "unsubscribed", "mailjet")
    return found


def _one(event: Mapping[str, Any], field: str, reason: str, provider: str) -> list[Suppression]:
    address = _text(event, field)
    if not address:
        raise WebhookPayloadError(f"a {provider} {reason} event has no `{field}`")
    return [Suppression(address, reason, provider)]


READERS: Mapping[str, Callable[[Any], list[Suppression]]] = {
    "postmark": postmark_suppressions,
    "mailjet": mailjet_suppressions,
}
