"""Who left or rejoined the list, when, and how: a table of its own in the ledger's file.

This table is the record of who left: one row per verified request, from
`newsletter serve` (a one-click unsubscribe, an undo, a provider's bounce,
complaint or unsubscribe webhook), `newsletter inbox` (a verified bounce,
complaint or mailed unsubscribe, a provider's record) and the `unsubscribe`
/ `resubscribe` commands. `changed` says whether the event changed
suppressed.csv (a mail client that repeats its one-click POST adds a row
with `changed = 0`).

`recipients/suppressed.csv` stays the team's file to read and edit by hand,
and a send honours both (`who_left`): an address whose latest event is
`suppressed` stays out even when a hand edit dropped its row, until an
explicit `resubscribed` event; `validate` names each such disagreement.

The table lives in the ledger's SQLite file (WAL, so `serve` writing here
never blocks `dispatch` reading deliveries) but belongs to this module only;
the delivery tables are `ledger.py`'s. suppressed.csv is written first: it is
what keeps people from being mailed, so a crash between the two loses a
history row, never an unsubscribe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.audience.suppression import (
    SuppressedAddress,
    add_suppression,
    read_suppressed,
    remove_suppression,
    suppression_reason,
)
from newsletter.core.errors import Problem
from newsletter.ledger.connection import open_connection
from newsletter.ledger.deliveries import ledger_error

if TYPE_CHECKING:
    from newsletter.core.project import Project

_SCHEMA = """
CREATE TABLE IF NOT EXISTS list_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL,
    list_id TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('suppressed', 'resubscribed')),
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    issue_id TEXT,
    changed INTEGER NOT NULL CHECK (changed IN (0, 1))
)
"""


@dataclass(frozen=True)
class ListEvent:
    """One verified change request: `action` taken for `reason`, as reported by `source`.

    `source` is where the request came from: `web` (the unsubscribe link or its
    page), `postmark` or `mailjet` (their webhooks). `issue_id` is the issue
    whose link was used, when known.
    """

    recorded_at: datetime
    list_id: str
    address: str
    action: str
    reason: str
    source: str
    issue_id: str | None = None
    changed: bool = True


@contextmanager
def _connect(ledger_path: Path) -> Iterator[sqlite3.Connection]:
    try:
        with closing(open_connection(ledger_path)) as conn:
            yield conn
    except (sqlite3.DatabaseError, OSError) as error:
        # The ledger's own sentence (locked, damaged, not writable), as every command says it.
        raise ledger_error(ledger_path, error, "use") from None


def prepare_list_events(ledger_path: Path) -> None:
    """Create the ledger file (WAL) and this module's table if they are missing."""
    with _connect(ledger_path) as conn:
        conn.execute(_SCHEMA)


def record_list_event(ledger_path: Path, event: ListEvent) -> None:
    """Append one event (its own short transaction; safe from many threads and processes)."""
    record_list_events(ledger_path, [event])


def record_list_events(ledger_path: Path, events: Iterable[ListEvent]) -> None:
    """Append events in one short transaction."""
    rows = [
        (
            event.recorded_at.astimezone(UTC).isoformat(timespec="seconds"),
            event.list_id,
            event.address,
            event.action,
            event.reason,
            event.source,
            event.issue_id,
            int(event.changed),
        )
        for event in events
    ]
    if not rows:
        return
    with _connect(ledger_path) as conn:
        conn.executemany(
            "INSERT INTO list_events (recorded_at, list_id, address, action, reason, source, "
            "issue_id, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


@dataclass(frozen=True)
class ListFiles:
    """Where who left is kept: the team's file, the ledger's events, and for which list."""

    suppressed_path: Path
    ledger_path: Path
    list_id: str


def list_files(project: Project) -> ListFiles:
    settings = project.settings
    return ListFiles(project.paths.suppressed_path, settings.ledger_path, settings.list_id)


def leave(files: ListFiles, address: str, reason: str, source: str, now: datetime) -> bool:
    """Take `address` off the list: its row in suppressed.csv, then its event (see the docstring).

    True if the file changed. Refuses (NewsletterError) an invalid address.
    """
    changed = add_suppression(files.suppressed_path, address, reason, now.date())
    prepare_list_events(files.ledger_path)
    event = ListEvent(now, files.list_id, address, "suppressed", reason, source, None, changed)
    record_list_event(files.ledger_path, event)
    return changed


def why_left(files: ListFiles, address: str) -> str | None:
    """The reason `address` is not mailed (its row, else its standing event), or None."""
    found = suppression_reason(files.suppressed_path, address)
    if found is not None:
        return found
    event = standing_suppressions(files.ledger_path, files.list_id).get(address.strip().lower())
    return None if event is None else event.reason


def rejoin(files: ListFiles, address: str, source: str, now: datetime) -> bool:
    """Put `address` back: drop its row and record `resubscribed`; False if it had not left."""
    removed = remove_suppression(files.suppressed_path, address)
    standing = address.strip().lower() in standing_suppressions(files.ledger_path, files.list_id)
    if not removed and not standing:
        return False
    prepare_list_events(files.ledger_path)
    event = ListEvent(now, files.list_id, address, "resubscribed", "resubscribe", source)
    record_list_event(files.ledger_path, event)
    return True


def read_list_events(ledger_path: Path) -> list[ListEvent]:
    """Every recorded event, oldest first (none when the table does not exist yet)."""
    if not ledger_path.exists():
        return []
    with _connect(ledger_path) as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'list_events'"
        ).fetchone()
        if not exists:
            return []
        rows = conn.execute(
            "SELECT recorded_at, list_id, address, action, reason, source, issue_id, changed "
            "FROM list_events ORDER BY id"
        ).fetchall()
    return [
        ListEvent(
            recorded_at=datetime.fromisoformat(row[0]),
            list_id=row[1],
            address=row[2],
            action=row[3],
            reason=row[4],
            source=row[5],
            issue_id=row[6],
            changed=bool(row[7]),
        )
        for row in rows
    ]


def standing_suppressions(ledger_path: Path, list_id: str) -> dict[str, ListEvent]:
    """Addresses (lower-cased) whose latest event on this list is `suppressed`."""
    latest: dict[str, ListEvent] = {}
    for event in read_list_events(ledger_path):
        if event.list_id == list_id:
            latest[event.address.strip().lower()] = event
    return {key: e for key, e in latest.items() if e.action == "suppressed"}


def left_without_a_row(suppressed_path: Path, ledger_path: Path, list_id: str) -> list[Problem]:
    """A warning for each standing `suppressed` event that suppressed.csv has no row for.

    A hand edit dropped it (an editor's copy saved over a one-click): they
    stay out until someone runs `resubscribe`, and `validate` says so.
    """
    listed, _ = read_suppressed(suppressed_path)
    problems = []
    for key, event in standing_suppressions(ledger_path, list_id).items():
        if key in listed:
            continue
        when = event.recorded_at.date().isoformat()
        problems.append(
            Problem(
                suppressed_path,
                1,
                1,
                f"{event.address} left the list on {when} ({event.reason}, via {event.source}) "
                "but has no row here; they are still not mailed. If they asked to come back, "
                f"run: newsletter resubscribe {event.address}",
                severity="warning",
                kind="people who left the list but have no row in suppressed.csv",
            )
        )
    return problems


def who_left(
    suppressed_path: Path, ledger_path: Path, list_id: str
) -> tuple[dict[str, SuppressedAddress], list[Problem]]:
    """Everyone who must not be mailed: suppressed.csv's rows and the standing list events.

    The one answer to "suppressed?" for planning a send. The problems are the
    file's own, and a warning for each standing event the file has no row for
    (a hand edit dropped it: they stay out until someone runs `resubscribe`).
    """
    suppressed, problems = read_suppressed(suppressed_path)
    for key, event in standing_suppressions(ledger_path, list_id).items():
        if key not in suppressed:
            when = event.recorded_at.date().isoformat()
            suppressed[key] = SuppressedAddress(event.address, when, event.reason)
    problems += left_without_a_row(suppressed_path, ledger_path, list_id)
    return suppressed, problems
