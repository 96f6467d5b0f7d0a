"""Delivery status notifications (RFC 3464): one event per failed or delayed recipient."""

from __future__ import annotations

from email.message import EmailMessage, Message

from newsletter.inbox.events import (
    Classification,
    EventKind,
    InboxContext,
    InboxEvent,
    issue_for_message_id,
)
from newsletter.inbox.mime import (
    first_part,
    one_line,
    original_message_id,
    plain_address,
    shortened,
    status_code,
    status_in_text,
)

# RFC 3463 subjects of a permanent failure that are about the address itself.
ADDRESS_SUBJECTS = frozenset({"1", "2", "5"})
# How servers that answer a bare 5.0.0 say the mailbox does not exist.
UNKNOWN_USER_WORDS = (
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "no such recipient",
    "unknown recipient",
    "recipient unknown",
    "mailbox not found",
    "does not exist",
    "invalid recipient",
)
# We send one message per recipient, so a report about ours names one; a few
# more are tolerated (a forwarding alias), thousands are only work for an attacker.
RECIPIENT_BLOCK_LIMIT = 20


def delivery_status(message: EmailMessage, context: InboxContext) -> Classification:
    status_part = first_part(message, "message/delivery-status")
    if status_part is None:
        return Classification(
            "unclassified", reason="a delivery report without its message/delivery-status part"
        )
    blocks = [b for b in status_part.get_payload() if isinstance(b, Message)]
    per_message = blocks[0] if blocks else None
    original_id = original_message_id(message, per_message)
    issue_id = issue_for_message_id(original_id, context.message_id_domain)
    events: list[InboxEvent] = []
    for block in blocks[1 : RECIPIENT_BLOCK_LIMIT + 1]:
        address = _typed_address(block.get("Final-Recipient")) or _typed_address(
            block.get("Original-Recipient")
        )
        action = one_line(block.get("Action")).lower()
        status = status_code(one_line(block.get("Status")))
        if address is None or action in ("delivered", "relayed", "expanded"):
            continue
        detail = _diagnostic(block)
        events.append(
            InboxEvent(
                bounce_kind(action, status, detail),
                address,
                status=status,
                action=action,
                detail=shortened(detail),
                issue_id=issue_id,
                original_message_id=original_id,
            )
        )
    if not events:
        return Classification(
            "unclassified", reason="a delivery report with no failed or delayed recipient"
        )
    return Classification("bounce", tuple(events))


def bounce_kind(action: str, status: str, detail: str) -> EventKind:
    """Hard, policy or soft bounce, from the DSN action, its status and the server's words.

    See the module docstring for the rule. `status` may be a bare 5.0.0 (Exim
    writes that and gives the real code in the server's words), so a more
    precise code in `detail` is preferred to it.
    """
    if action != "failed" or not status.startswith("5."):
        return "soft-bounce"
    subject = status.split(".")[1]
    if subject == "0":
        precise = status_in_text(detail)
        if precise.startswith("5.") and precise.split(".")[1] != "0":
            subject = precise.split(".")[1]
    if subject in ADDRESS_SUBJECTS:
        return "hard-bounce"
    words = " ".join(detail.lower().split())
    if subject == "0" and any(phrase in words for phrase in UNKNOWN_USER_WORDS):
        return "hard-bounce"
    return "policy-bounce"


def _diagnostic(block: Message) -> str:
    code = one_line(block.get("Diagnostic-Code"))
    # "smtp; 550 5.1.1 ..." -> the server's words after the type.
    return code.partition(";")[2].strip() if ";" in code else code


def _typed_address(value: object) -> str | None:
    """The address of an RFC 3464 `rfc822; someone@example.org` field."""
    text = one_line(value)
    if not text:
        return None
    kind, _, address = text.partition(";")
    if not address:
        kind, address = "rfc822", kind
    if kind.strip().lower() != "rfc822":
        return None
    return plain_address(address)
