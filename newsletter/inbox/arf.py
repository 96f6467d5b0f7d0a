"""Feedback reports (RFC 5965): a complaint about the recipient of one of our messages."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage, Message
from email.parser import Parser
from email.utils import getaddresses

from newsletter.inbox.events import Classification, InboxContext, InboxEvent, issue_for_message_id
from newsletter.inbox.mime import (
    first_part,
    message_id_of,
    one_line,
    plain_address,
    returned_headers,
    shortened,
)

COMPLAINT_FEEDBACK_TYPES = frozenset({"abuse", "fraud", "virus", "other"})


def feedback_report(message: EmailMessage, context: InboxContext) -> Classification:
    part = first_part(message, "message/feedback-report")
    fields = _feedback_fields(part) if part is not None else None
    if fields is None:
        return Classification(
            "unclassified", reason="a feedback report without its message/feedback-report part"
        )
    feedback_type = one_line(fields.get("Feedback-Type")).lower()
    if feedback_type not in COMPLAINT_FEEDBACK_TYPES:
        return Classification(
            "unclassified", reason=f"a feedback report of type `{feedback_type or '?'}`"
        )
    original = returned_headers(message)
    original_id = message_id_of(original)
    address = _complainant(fields, original, original_id, context)
    if address is None:
        return Classification("unclassified", reason="a complaint that does not say who complained")
    event = InboxEvent(
        "complaint",
        address,
        action=feedback_type,
        detail=shortened(one_line(fields.get("User-Agent"))),
        issue_id=issue_for_message_id(original_id, context.message_id_domain),
        original_message_id=original_id,
    )
    return Classification("complaint", (event,))


def _complainant(
    fields: Message, original: Message | None, original_id: str | None, context: InboxContext
) -> str | None:
    """Who complained: the report's own fields first, then the returned message.

    Reporters often hide the recipient (`To: redacted@...`). When the returned
    message carries one of our Message-IDs and the context can tell whom it
    was made for (`InboxContext.made_for`, keyed), a candidate is only
    believed if it was made for it, and otherwise the ledger is asked.
    """
    candidates = [
        plain_address(one_line(value))
        for value in (
            fields.get("Original-Rcpt-To"),
            fields.get("Removal-Recipient"),
            original.get("X-HmXmrOriginalRecipient") if original is not None else None,
        )
    ]
    if original is not None:
        to = [a for _, a in getaddresses([one_line(v) for v in original.get_all("To", [])])]
        if len(to) == 1:
            candidates.append(plain_address(to[0]))
    found = [c for c in candidates if c]
    issue_id = issue_for_message_id(original_id, context.message_id_domain)
    if original_id is None or issue_id is None:
        return found[0] if found else None
    for candidate in found:
        if context.made_for is not None and context.made_for(original_id, candidate):
            return candidate
    return context.recipient_of(original_id) if context.recipient_of is not None else None


def _feedback_fields(part: Message) -> Message | None:
    """The feedback report's fields; the stdlib parses a message/* body as a nested message."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        return Parser(policy=policy.default).parsestr(payload, headersonly=True)
    return None
