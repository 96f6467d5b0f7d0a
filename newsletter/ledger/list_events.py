"""Who left or rejoined the list, when, and how: a table of its own in the ledger's file.

`recipients/suppressed.csv` says who must not be mailed *now*; this table
keeps the history behind it, one row per event that `newsletter serve`
verified: a one-click unsubscribe (from a mail client or the confirmation
page), an undo, or a provider's bounce, complaint or unsubscribe webhook.
`changed` says whether the event changed suppressed.csv (a mail client that
repeats its one-click POST adds a row with `changed = 0`).

The table lives in the ledger's SQLite file (WAL, so `serve` writing here
never blocks `dispatch` reading deliveries) but belongs to this module only;
the delivery tables are `ledger.py`'s. suppressed.csv is written first: it is
what keeps people from being mailed, so a crash between the two loses a
history row, never an unsubscribe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from newsletter.core.errors import NewsletterError
from newsletter.ledger.connection import open_connection

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
        raise NewsletterError(f"{ledger_path}: cannot record the list event ({error})") from None


def prepare_list_events(ledger_path: Path) -> None:
    """Create the ledger file (WAL) and this module's table if they are missing."""
    with _connect(ledger_path) as conn:
        conn.execute(_SCHEMA)


def record_list_event(ledger_path: Path, event: ListEvent) -> None:
    """Append one event (its own short transaction; safe from many threads and processes)."""
    with _connect(ledger_path) as conn:
        conn.execute(
            "INSERT INTO list_events (recorded_at, list_id, address, action, reason, source, "
            "issue_id, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.recorded_at.astimezone(UTC).isoformat(timespec="seconds"),
                event.list_id,
                event.address,
                event.action,
                event.reason,
                event.source,
                event.issue_id,
                int(event.changed),
            ),
        )


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
