"""What classifying a returned message gives: events about addresses, as data."""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal[
    "hard-bounce",
    "policy-bounce",
    "soft-bounce",
    "complaint",
    "unsubscribe",
    "auto-reply",
    "unclassified",
]
MessageClass = Literal["bounce", "complaint", "unsubscribe", "auto-reply", "unclassified"]

# The suppression-list reason each acted-on event is filed under.
SUPPRESSION_REASON: dict[str, str] = {
    "hard-bounce": "hard-bounce",
    "complaint": "complaint",
    "unsubscribe": "mailto",
}
_HEX = frozenset(string.hexdigits)


@dataclass(frozen=True)
class InboxEvent:
    """One thing a returned message says about one address."""

    kind: EventKind
    address: str | None = None
    status: str = ""  # the enhanced status code, e.g. 5.1.1
    action: str = ""  # the DSN action, or the feedback type of a complaint
    detail: str = ""  # the remote server's words, shortened
    issue_id: str | None = None
    original_message_id: str | None = None
    # Why the event could not be tied to a message we sent (`inbox.verify`): it is
    # then recorded and listed for a person, never applied. Empty when verified,
    # and for provider records, which their credentials vouch for.
    unverified: str = ""

    @property
    def verified(self) -> bool:
        return not self.unverified

    @property
    def suppression_reason(self) -> str | None:
        """The reason to file on the suppression list, or None when nobody is suppressed."""
        if not self.address or not self.verified:
            return None
        return SUPPRESSION_REASON.get(self.kind)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "address": self.address,
            "status": self.status,
            "action": self.action,
            "detail": self.detail,
            "issue": self.issue_id,
            "original_message_id": self.original_message_id,
            "unverified": self.unverified or None,
        }


@dataclass(frozen=True)
class Classification:
    """What one message is, and the events it carries (none for an unclassified one)."""

    message_class: MessageClass
    events: tuple[InboxEvent, ...] = ()
    reason: str = ""  # why a message is unclassified, in words for a person


@dataclass(frozen=True)
class InboxContext:
    """What classifying needs to know about this newsletter.

    `recipient_of` answers "who was sent the message with this Message-ID?"
    from the delivery ledger, for complaints whose reporter hid the address.
    """

    unsubscribe_address: str
    message_id_domain: str  # the domain of our Message-IDs (the sender's domain)
    recipient_of: Callable[[str], str | None] | None = None
    # "Was the message with this Message-ID made for this address?" (keyed: `inbox.verify`).
    made_for: Callable[[str, str], bool] | None = None


def issue_for_message_id(message_id: str | None, domain: str) -> str | None:
    """The issue id inside one of our Message-IDs (`<ISSUE.DIGEST@DOMAIN>`), else None."""
    if not message_id:
        return None
    inner = message_id.strip().removeprefix("<").removesuffix(">")
    local, at, host = inner.rpartition("@")
    if not at or host.lower() != domain.lower():
        return None
    issue_id, dot, digest = local.rpartition(".")
    if not dot or not issue_id or len(digest) != 32 or not set(digest) <= _HEX:
        return None
    return issue_id
