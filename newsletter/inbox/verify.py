"""Does a returned message prove it answers a message we sent to that address?

Anyone can send the inbox a bounce, a complaint or an unsubscribe naming
anyone, so what mail says changes the list only when it carries a value only
we could have made (`core.signing`), for that address:

- a bounce or complaint: one of our keyed Message-IDs, quoted anywhere we
  read it (the DSN's X-Original-Message-ID, a message/rfc822 or
  text/rfc822-headers part, the headers an Exchange bounce quotes,
  In-Reply-To), made for the address the event names; or the signed tag of
  the return path it was delivered to (To, Delivered-To, X-Original-To,
  Envelope-To: `bounces+TOKEN@...`), made for that address. Either way the
  delivery ledger must have handed that issue to that address.
- an unsubscribe mailed to the unsubscribe address: the `ref TOKEN` our
  mailto: link puts in the subject, signed for the address it names (or for
  the sender), exactly as a one-click link is checked.

An event that proves nothing gets the reason in `unverified`: `inbox`
records and lists it for a person and never applies it. Provider webhooks and
API records never come here: their credentials vouch for them.

The work is bounded: a classification carries at most a few events
(`dsn.RECIPIENT_BLOCK_LIMIT`), and each is checked against the issues the
ledger knows, one indexed lookup each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage

from newsletter.core.settings import UNSUBSCRIBE_SECRET_ENV
from newsletter.core.signing import (
    UNSUBSCRIBE,
    address_token_is_valid,
    mailto_references,
    message_digest_is_valid,
    return_path_token_is_valid,
    return_path_tokens,
)
from newsletter.inbox.events import Classification, InboxEvent, issue_for_message_id
from newsletter.inbox.mime import one_line, sender_of, text_parts

# Where a delivered bounce names the address it was delivered to.
DELIVERY_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To")
CHECKED_KINDS = frozenset(
    {"hard-bounce", "policy-bounce", "soft-bounce", "complaint", "unsubscribe"}
)
NO_SECRET = (
    f"not checked: {UNSUBSCRIBE_SECRET_ENV} is not set, so nothing returned can be "
    "tied to a message we sent"
)
UNPROVEN = (
    "not verified: it carries none of our signed Message-IDs or return paths for this "
    "address, or we never sent to it; a person should look before changing the list"
)
UNSIGNED_UNSUBSCRIBE = (
    "not verified: the request does not carry the signed reference of our unsubscribe "
    "link for this address; a person should check who asked"
)
# Enough of a mailed request's body to find the reference in, however long it is.
_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class SentMessages:
    """What the delivery ledger says we handed over (read only; see `inbox_records`)."""

    issue_ids: Callable[[], list[str]]
    was_sent: Callable[[str, str], bool]  # (issue id, address)
    recipient_of: Callable[[str], str | None]  # Message-ID -> address


@dataclass(frozen=True)
class Evidence:
    """What one returned message carries that could prove it answers ours."""

    return_path_tokens: tuple[str, ...]
    references: tuple[str, ...]
    sender: str | None


def evidence_of(message: EmailMessage) -> Evidence:
    """Read the return-path tags, mailto references and sender of `message`."""
    delivered = " ".join(
        one_line(value) for name in DELIVERY_HEADERS for value in message.get_all(name, [])
    )
    subject = one_line(message.get("Subject"))
    body = "".join(_limited(text_parts(message)))
    return Evidence(
        tuple(dict.fromkeys(return_path_tokens(delivered))),
        tuple(dict.fromkeys(mailto_references(subject + "\n" + body))),
        sender_of(message),
    )


def _limited(texts: Iterable[str]) -> Iterable[str]:
    left = _BODY_LIMIT
    for text in texts:
        if left <= 0:
            return
        yield text[:left]
        left -= len(text)


class Verifier:
    """Checks events read from mail against the signing key and the delivery ledger."""

    def __init__(self, secret: str | None, list_id: str, domain: str, sent: SentMessages) -> None:
        self.secret = secret
        self.list_id = list_id
        self.domain = domain
        self.sent = sent

    def made_for(self, message_id: str, address: str) -> bool:
        """Whether our Message-ID `message_id` was made for `address` (False without a key)."""
        issue_id = issue_for_message_id(message_id, self.domain)
        if not self.secret or issue_id is None:
            return False
        digest = message_id.strip().strip("<>").rpartition("@")[0].rpartition(".")[2]
        return message_digest_is_valid(self.secret, issue_id, address, digest)

    def check(self, classification: Classification, message: EmailMessage) -> Classification:
        """`classification` with each event verified, or marked unverified with the reason."""
        if not any(e.kind in CHECKED_KINDS for e in classification.events):
            return classification
        evidence = evidence_of(message)
        events = tuple(self._event(event, evidence) for event in classification.events)
        return replace(classification, events=events)

    def _event(self, event: InboxEvent, evidence: Evidence) -> InboxEvent:
        if event.kind not in CHECKED_KINDS:
            return event
        if not self.secret:
            return _unverified(event, NO_SECRET)
        if event.kind == "unsubscribe":
            return self._unsubscribe(event, evidence)
        proven = self._by_message_id(event) or self._by_return_path(event, evidence)
        return proven or _unverified(event, UNPROVEN)

    def _by_message_id(self, event: InboxEvent) -> InboxEvent | None:
        message_id = event.original_message_id
        issue_id = issue_for_message_id(message_id, self.domain)
        if message_id is None or issue_id is None:
            return None
        # The report may name another address than ours: a reporter hides it, a
        # forwarding mailbox bounces at the address it forwards to. Our Message-ID
        # still says whom we sent it to, and that is the address it is about.
        for address in self._addresses_of(event, message_id):
            if (
                address
                and self.made_for(message_id, address)
                and self.sent.was_sent(issue_id, address)
            ):
                if event.address and address.lower() != event.address.lower():
                    detail = f"reported for {event.address}; {event.detail}".strip("; ")
                    return replace(event, address=address, issue_id=issue_id, detail=detail)
                return replace(event, issue_id=issue_id)
        return None

    def _addresses_of(self, event: InboxEvent, message_id: str) -> Iterator[str | None]:
        """The address the event names, then (only if asked for) the one the ledger sent to."""
        yield event.address
        yield self.sent.recipient_of(message_id)

    def _by_return_path(self, event: InboxEvent, evidence: Evidence) -> InboxEvent | None:
        if not event.address or not evidence.return_path_tokens or not self.secret:
            return None
        for issue_id in self.sent.issue_ids():
            for token in evidence.return_path_tokens:
                if return_path_token_is_valid(
                    self.secret, issue_id, event.address, token
                ) and self.sent.was_sent(issue_id, event.address):
                    return replace(event, issue_id=issue_id)
        return None

    def _unsubscribe(self, event: InboxEvent, evidence: Evidence) -> InboxEvent:
        assert self.secret
        for address in (event.address, evidence.sender):
            for token in evidence.references:
                if address and address_token_is_valid(
                    self.secret, UNSUBSCRIBE, self.list_id, address, token
                ):
                    return replace(event, address=address)
        return _unverified(event, UNSIGNED_UNSUBSCRIBE)


def _unverified(event: InboxEvent, reason: str) -> InboxEvent:
    return replace(event, unverified=reason)
