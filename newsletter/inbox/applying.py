"""What `inbox` found, applied a batch of messages at a time: the list, then the ledger.

A poll of thousands of bounces (someone back from leave) must not rewrite
and fsync suppressed.csv, nor commit the ledger, once per message: that made
a poll quadratic. So the messages of a batch are applied together, in three
steps, each once for the whole batch and in this order:

1. their suppressions, in one locked, atomic write of suppressed.csv
   (`suppression.add_suppression_batches`), which says what each message
   added as if the messages had been applied one after another (the second
   bounce of an address in one poll finds it already listed, as before);
2. the list events of what was applied (`list_events`), one transaction;
3. the messages and their events as processed (`inbox_records`), one
   transaction.

A message is recorded as processed only after its suppressions are on
disk, so a crash or a kill anywhere in a batch loses no suppression: the
next poll reads the messages not yet recorded again and applies them again,
which adds nobody twice (an address already listed is left as it is). A
dry run works out the same answers against the list as it stands and
writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from newsletter.audience.suppression import (
    AddResult,
    add_suppression_batches,
    address_problem,
    read_suppressed,
)
from newsletter.inbox.events import InboxEvent
from newsletter.ledger.inbox_records import InboxStore, ProcessedMessage
from newsletter.ledger.list_events import (
    ListEvent,
    ListFiles,
    prepare_list_events,
    record_list_events,
)

# Messages a batch holds: a poll of thousands writes the list a handful of times, and a
# kill costs at most this many messages read again (on IMAP, moved only once recorded).
BATCH_SIZE = 500


@dataclass(frozen=True)
class Handled:
    """One message to apply: its record (`suppressed` still empty) and what it asks to suppress."""

    message: ProcessedMessage
    wanted: tuple[tuple[str, str], ...]  # (address, reason)


def suppressions_wanted(events: Sequence[InboxEvent]) -> tuple[tuple[str, str], ...]:
    """The (address, reason) of each verified event that takes someone off the list."""
    return tuple(
        (event.address, event.suppression_reason)
        for event in events
        if event.suppression_reason is not None and event.address is not None
    )


class Applier:
    """Applies batches of handled messages to the list and the ledger (see the docstring)."""

    def __init__(
        self, files: ListFiles, store: InboxStore, today: date, event_source: str, dry_run: bool
    ) -> None:
        self.files = files
        self.store = store
        self.today = today
        self.event_source = event_source
        self.dry_run = dry_run
        self._would_be_listed: set[str] | None = None  # a dry run's list, as it would grow

    def apply(self, batch: Sequence[Handled]) -> list[AddResult]:
        """Apply `batch`, in order; what each message added to the list and what was refused."""
        if not batch:
            return []
        if self.dry_run:
            return [self._would_add(handled.wanted) for handled in batch]
        results = add_suppression_batches(
            self.files.suppressed_path, [handled.wanted for handled in batch], self.today
        )
        now = datetime.now(UTC)
        left = [
            event
            for handled, result in zip(batch, results, strict=True)
            for event in self._left(handled.message.events, result, now)
        ]
        if left:
            prepare_list_events(self.files.ledger_path)
            record_list_events(self.files.ledger_path, left)
        self.store.record_all(
            [
                replace(handled.message, suppressed=frozenset(a.lower() for a in result.added))
                for handled, result in zip(batch, results, strict=True)
            ]
        )
        return results

    def _left(
        self, events: Sequence[InboxEvent], result: AddResult, now: datetime
    ) -> list[ListEvent]:
        """The list events of what one message applied: the record of who left."""
        added = {a.lower() for a in result.added}
        skipped = {a.lower() for a, _ in result.refused}
        return [
            ListEvent(
                now,
                self.files.list_id,
                e.address,
                "suppressed",
                e.suppression_reason,
                self.event_source,
                e.issue_id,
                e.address.lower() in added,
            )
            for e in events
            if e.address and e.suppression_reason and e.address.lower() not in skipped
        ]

    def _would_add(self, wanted: Sequence[tuple[str, str]]) -> AddResult:
        """What a real run would add and refuse, against the list as it stands."""
        if self._would_be_listed is None:
            self._would_be_listed = set(read_suppressed(self.files.suppressed_path)[0])
        added: list[str] = []
        refused: list[tuple[str, str]] = []
        for address, _reason in wanted:
            why = address_problem(address)
            if why:
                refused.append((address, why))
            elif address.lower() not in self._would_be_listed:
                self._would_be_listed.add(address.lower())
                added.append(address)
        return AddResult(tuple(added), (), tuple(refused))
