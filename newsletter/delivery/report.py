"""The `report` command's library: who got one issue, and what came back afterwards.

The delivery ledger says what happened at sending time (sent, failed,
suppressed, ...). What happened next is in two other tables of the same
file: the inbox's (`inbox_store.py`: bounces, complaints and mailed
unsubscribes that `newsletter inbox` read) and the list's
(`list_events.py`: one-click unsubscribes and provider webhooks that
`newsletter serve` took). This module joins the three into one status per
recipient, in words a comms officer can act on:

- `sent`; then, from what came back: `bounced-later` (a bounce after the
  relay accepted the message: hard, refused by policy, or given up on),
  `complained` (marked as spam), `unsubscribed` (left the list after it);
- `failed` (refused for good at sending time), `to-retry` (a temporary
  failure `newsletter retry` will try again), `pending` (not sent yet, or
  in flight), `suppressed` (on the suppression list, so not sent);
- any other ledger state (such as `unknown`, an outcome the relay never
  confirmed) is reported under its own name.

Which issue an event belongs to: the returned Message-ID says so when the
event has one of ours (every message has its own); otherwise the issue it
names (an unsubscribe link carries it); otherwise, matched by address, the
last issue sent to that address before the event was recorded. A bounce
beats a complaint, which beats an unsubscribe; a web unsubscribe that was
undone (`resubscribed`) no longer counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from newsletter.core.errors import NewsletterError
from newsletter.core.project import Project
from newsletter.ledger.deliveries import (
    DeliveryRow,
    DeliverySummary,
    Ledger,
    State,
    open_ledger_if_exists,
)
from newsletter.ledger.inbox_records import (
    RecordedEvent,
    read_recorded_events,
    read_unverified_events,
)
from newsletter.ledger.list_events import ListEvent, read_list_events


@dataclass(frozen=True)
class ReportedFailure:
    email: str
    state: State
    attempts: int
    detail: str


# The statuses a recipient can have, in the order the report counts them.
STATUSES: tuple[str, ...] = (
    "sent",
    "bounced-later",
    "complained",
    "unsubscribed",
    "failed",
    "to-retry",
    "pending",
    "suppressed",
)
# A ledger state's status when nothing came back; a state not listed is its own status.
STATUS_OF_STATE: dict[str, str] = {
    "sent": "sent",
    "failed-permanent": "failed",
    "failed-temporary": "to-retry",
    "pending": "pending",
    "sending": "pending",
    "suppressed": "suppressed",
}
# Ledger states of messages a relay may have accepted, so that something can come back.
HANDED_OVER: frozenset[str] = frozenset({"sent", "unknown"})

LaterStatus = Literal["bounced-later", "complained", "unsubscribed", "resubscribed"]
# When several things came back, the one that says most about the delivery wins.
_PRECEDENCE: tuple[LaterStatus, ...] = ("bounced-later", "complained", "unsubscribed")


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient of the issue: their status, why, and since when."""

    email: str
    status: str
    reason: str
    at: str | None  # when the status was reached (ISO 8601), if known
    ledger_state: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeliveryReport:
    """What the ledger says about one issue: who got it, who did not, and why."""

    summary: DeliverySummary
    per_segment: dict[str, dict[str, int]]
    failures: tuple[ReportedFailure, ...]
    recipients: tuple[RecipientStatus, ...] = ()
    # Returned mail about this issue's people that proved nothing: listed for a person,
    # never applied (a forged bounce must not take anyone off the list).
    unverified: tuple[RecordedEvent, ...] = ()

    def status_counts(self) -> dict[str, int]:
        """How many recipients have each status: every usual status, then any other present."""
        found = Counter(r.status for r in self.recipients)
        counts = {status: found.get(status, 0) for status in STATUSES}
        counts.update((status, n) for status, n in sorted(found.items()) if status not in counts)
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.summary.issue_id,
            "started_at": self.summary.started_at,
            "finished_at": self.summary.finished_at,
            "complete": self.summary.complete,
            "counts": dict(self.summary.counts),
            "statuses": self.status_counts(),
            "needs_attention": self.summary.needs_attention,
            "per_segment": self.per_segment,
            "failures": [f.__dict__ for f in self.failures],
            "recipients": [r.as_dict() for r in self.recipients],
            "unverified": [
                {
                    "kind": e.kind,
                    "address": e.address,
                    "at": e.recorded_at.isoformat(),
                    "why": e.unverified,
                }
                for e in self.unverified
            ],
        }

    def hints(self) -> list[str]:
        """What the team can do about the people no automatic run will send to again."""
        return attention_hints(self.summary)


# The rows the report lists one by one, with their last error.
REPORTED_STATES: tuple[State, ...] = (
    "unknown",
    "gave-up",
    "failed-permanent",
    "failed-temporary",
    "sending",
)


def attention_hints(summary: DeliverySummary) -> list[str]:
    """One line per kind of person left in doubt: how many, why, and the command that resends."""
    issue_id = summary.issue_id
    waiting = summary.needs_attention
    hints = []
    if waiting.get("unknown"):
        hints.append(
            f"{waiting['unknown']} unknown: the whole message was handed over and the relay "
            "never confirmed it, so they may already have it. Nothing resends them unless "
            f"you run `newsletter retry {issue_id} --unknown`"
        )
    if waiting.get("gave-up"):
        hints.append(
            f"{waiting['gave-up']} given up on after retry.max_total_attempts tries in all; "
            f"`newsletter retry {issue_id}` tries them once more"
        )
    return hints


def delivery_report(project: Project, issue: str) -> DeliveryReport:
    """Read an issue's delivery from the ledger (`issue` is its id, or its file)."""
    ledger_path = project.settings.ledger_path
    ledger = open_ledger_if_exists(ledger_path)
    if ledger is None:
        raise NewsletterError(
            f"nothing has been sent yet: there is no delivery ledger at {ledger_path}"
        )
    with ledger:
        issue_id = issue if issue in ledger.issue_ids() else project.load_issue(issue).id
        summary = ledger.summary(issue_id)
        if not summary.started:
            raise NewsletterError(f"the ledger has no deliveries of {issue_id} yet")
        failures = tuple(
            ReportedFailure(row.email, row.state, row.attempts, row.last_error)
            for row in ledger.rows(issue_id, REPORTED_STATES)
        )
        rows = list(ledger.rows(issue_id))
        later = later_events(read_recorded_events(ledger_path), read_list_events(ledger_path))
        recipients = recipient_statuses(ledger, issue_id, rows, later)
        unverified = doubtful_events(read_unverified_events(ledger_path), issue_id, rows)
        return DeliveryReport(
            summary, ledger.count_segments(issue_id), failures, recipients, unverified
        )


def doubtful_events(
    events: Iterable[RecordedEvent], issue_id: str, rows: Iterable[DeliveryRow]
) -> tuple[RecordedEvent, ...]:
    """The unverified events that name this issue or one of its recipients."""
    addresses = {row.address_key for row in rows}
    return tuple(
        e
        for e in events
        if e.issue_id == issue_id or (e.address is not None and e.address.lower() in addresses)
    )


# --- what came back, from the inbox and from `serve` ---------------------------


@dataclass(frozen=True)
class LaterEvent:
    """Something that came back about an address after a send, as a status and a reason."""

    address_key: str
    status: LaterStatus
    reason: str
    at: datetime
    issue_id: str | None = None
    message_id: str | None = None


def later_events(
    inbox: Iterable[RecordedEvent], list_events: Iterable[ListEvent]
) -> list[LaterEvent]:
    """The events that change a recipient's status, from both tables, oldest first."""
    found = [e for e in map(_from_inbox, inbox) if e is not None]
    found += [e for e in map(_from_list, list_events) if e is not None]
    return sorted(found, key=lambda e: e.at)


def _from_inbox(event: RecordedEvent) -> LaterEvent | None:
    if not event.address:
        return None
    words = f": {event.detail}" if event.detail else ""
    code = f" {event.status}" if event.status else ""
    if event.kind == "hard-bounce":
        status: LaterStatus = "bounced-later"
        reason = f"hard bounce{code}{words}"
    elif event.kind == "policy-bounce":
        status = "bounced-later"
        reason = f"refused by the receiving system's policy{code}{words} (still on the list)"
    elif event.kind == "soft-bounce" and event.action == "failed":
        status = "bounced-later"
        reason = f"the mail system gave up{code}{words} (still on the list)"
    elif event.kind == "complaint":
        status = "complained"
        reason = f"marked as spam ({event.action or 'complaint'}), reported by {event.source}"
    elif event.kind == "unsubscribe":
        status = "unsubscribed"
        reason = "asked to leave by writing to the unsubscribe address"
    else:  # a delay or an auto-reply says nothing about the delivery
        return None
    return LaterEvent(
        event.address.lower(),
        status,
        reason,
        event.recorded_at,
        event.issue_id,
        event.original_message_id,
    )


def _from_list(event: ListEvent) -> LaterEvent | None:
    where = "the unsubscribe link" if event.source == "web" else event.source
    status: LaterStatus
    if event.action == "resubscribed":
        status, reason = "resubscribed", f"resubscribed through {where}"
    elif event.reason == "hard-bounce":
        status, reason = "bounced-later", f"hard bounce reported by {where}"
    elif event.reason == "complaint":
        status, reason = "complained", f"marked as spam, reported by {where}"
    elif event.source == "web":
        status, reason = "unsubscribed", "unsubscribed with the one-click link"
    else:
        status, reason = "unsubscribed", f"unsubscribed through {where} ({event.reason})"
    return LaterEvent(event.address.lower(), status, reason, event.recorded_at, event.issue_id)


# --- joining them to the issue's rows ---------------------------------------------


def recipient_statuses(
    ledger: Ledger, issue_id: str, rows: Iterable[DeliveryRow], later: Iterable[LaterEvent]
) -> tuple[RecipientStatus, ...]:
    """Each row of the issue with its status, after what came back for it."""
    rows = list(rows)
    by_key = {row.address_key: row for row in rows}
    by_message_id = {row.message_id: row.address_key for row in rows if row.message_id}
    history = _SendHistory(ledger)
    attached: dict[str, list[LaterEvent]] = {}
    for event in later:
        key = _row_for(event, issue_id, by_key, by_message_id, history)
        if key is not None:
            attached.setdefault(key, []).append(event)
    return tuple(_status(row, attached.get(row.address_key, [])) for row in rows)


def _row_for(
    event: LaterEvent,
    issue_id: str,
    by_key: Mapping[str, DeliveryRow],
    by_message_id: Mapping[str, str],
    history: _SendHistory,
) -> str | None:
    """The address key of this issue's row that `event` is about, if it is about this issue."""
    if event.message_id and event.message_id in by_message_id:
        # Each message has its own Message-ID: this finds the row even when the
        # bounce names the address the message was forwarded to.
        return by_message_id[event.message_id]
    if event.address_key not in by_key:
        return None
    if event.issue_id is not None:
        return event.address_key if event.issue_id == issue_id else None
    row = by_key[event.address_key]
    if row.state not in HANDED_OVER:
        return None
    return event.address_key if issue_id in history.last_sent_before(row, event.at) else None


class _SendHistory:
    """When each issue was sent to an address, read from the ledger only when needed."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._issue_ids: list[str] | None = None
        self._sends: dict[str, list[tuple[datetime, str]]] = {}

    def last_sent_before(self, row: DeliveryRow, at: datetime) -> set[str]:
        """The issues sent to `row`'s address last at or before `at` (several only on a tie)."""
        if self._issue_ids is None:
            self._issue_ids = self._ledger.issue_ids()
        sends = self._sends.get(row.address_key)
        if sends is None:
            sends = []
            for other in self._issue_ids:
                found = self._ledger.lookup(other, row.address_key)
                if found is not None and found.sent_at:
                    sends.append((datetime.fromisoformat(found.sent_at), other))
            self._sends[row.address_key] = sends
        before = [(when, issue) for when, issue in sends if when <= at]
        if not before:
            return set()
        latest = max(when for when, _ in before)
        return {issue for when, issue in before if when == latest}


def _status(row: DeliveryRow, events: list[LaterEvent]) -> RecipientStatus:
    if row.state in HANDED_OVER and events:
        current: dict[str, LaterEvent] = {}
        for event in events:  # oldest first
            if event.status == "resubscribed":
                current.pop("unsubscribed", None)
            else:
                current.setdefault(event.status, event)
        for later in _PRECEDENCE:
            if later in current:
                event = current[later]
                at = event.at.isoformat(timespec="seconds")
                return RecipientStatus(row.email, later, event.reason, at, row.state)
    status = STATUS_OF_STATE.get(row.state, row.state)
    if row.state == "sent":
        return RecipientStatus(row.email, status, "", row.sent_at, row.state)
    reason = row.last_error.removeprefix("suppressed: ")
    return RecipientStatus(row.email, status, reason, row.updated_at, row.state)
