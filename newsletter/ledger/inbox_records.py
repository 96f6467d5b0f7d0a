"""What `newsletter inbox` has processed, kept in the delivery ledger's SQLite file.

Two tables of their own beside the ledger's (`ledger.py` owns the rest of the
file and is not touched):
- `inbox_messages`: one row per processed message, keyed by its Message-ID
  (or a provider's record id, or a hash of the bytes when a message has no
  Message-ID). A key found here is never acted on again: that is what makes
  a second run change nothing.
- `inbox_events`: what each message said (hard or soft bounce, complaint,
  unsubscribe, auto-reply), per address, with the issue it answered when the
  returned Message-ID names one, and whether it added the address to the
  suppression list.

A batch of messages and their events are written in one transaction, after
the suppression list has been updated for all of them (`inbox/applying`): a
crash in between only means the next run adds the same addresses again,
which the list ignores.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from newsletter.core.errors import LedgerError, NewsletterError
from newsletter.inbox.classify import InboxEvent
from newsletter.ledger.connection import open_connection
from newsletter.ledger.deliveries import Ledger, open_ledger_if_exists

_T = TypeVar("_T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS inbox_messages (
        message_key TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        message_class TEXT NOT NULL,
        sender TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        processed_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS inbox_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_key TEXT NOT NULL REFERENCES inbox_messages (message_key),
        kind TEXT NOT NULL,
        address TEXT,
        address_key TEXT,
        status TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        issue_id TEXT,
        original_message_id TEXT,
        suppressed INTEGER NOT NULL DEFAULT 0,
        recorded_at TEXT NOT NULL,
        unverified TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS inbox_events_address ON inbox_events (address_key)",
    "CREATE INDEX IF NOT EXISTS inbox_events_issue ON inbox_events (issue_id, kind)",
)


@dataclass(frozen=True)
class ProcessedMessage:
    """One message to record as processed."""

    key: str
    source: str
    message_class: str
    sender: str
    subject: str
    events: tuple[InboxEvent, ...]
    suppressed: frozenset[str]  # lower-cased addresses this message added to the list


@dataclass(frozen=True)
class RecordedEvent:
    """One event as the inbox tables keep it, for `report` to join with deliveries."""

    kind: str
    address: str | None
    status: str
    action: str
    detail: str
    issue_id: str | None
    original_message_id: str | None
    source: str
    suppressed: bool  # this message added the address to the suppression list
    recorded_at: datetime
    unverified: str = ""  # why it proved nothing (left for a person); empty when applied


class InboxStore:
    """The inbox tables in the ledger file at `ledger_path`.

    `read_only=True` (a dry run) never creates the file or the tables: a
    missing file or table simply means nothing has been processed yet.
    """

    def __init__(self, ledger_path: Path, *, read_only: bool = False) -> None:
        self.ledger_path = Path(ledger_path)
        self.read_only = read_only
        self._conn: sqlite3.Connection | None = None
        try:
            if read_only:
                if self.ledger_path.exists():
                    self._conn = open_connection(self.ledger_path, "ro")
            else:
                self._conn = open_connection(self.ledger_path)
                self._conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    self._conn.execute(statement)
                _add_unverified_column(self._conn)
                self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as error:
            raise NewsletterError(
                f"{self.ledger_path}: cannot open the delivery ledger ({error})"
            ) from error

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> InboxStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_processed(self, key: str) -> bool:
        """Whether the message (or provider record) with this key was acted on before."""
        if self._conn is None:
            return False
        try:
            row = self._conn.execute(
                "SELECT 1 FROM inbox_messages WHERE message_key = ?", (key,)
            ).fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return False
            raise
        return row is not None

    def record_all(self, batch: Sequence[ProcessedMessage]) -> list[bool]:
        """Record messages and their events in one transaction: for each, False if already there.

        One transaction a batch keeps a poll of thousands of bounces to a few
        commits; a message already recorded (by another run meanwhile) keeps
        its first record and gets no second set of events.
        """
        if self._conn is None or self.read_only:
            raise NewsletterError("a dry run records nothing")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        conn = self._conn
        recorded: list[bool] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for processed in batch:
                recorded.append(_insert(conn, processed, now))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return recorded

    def events(self, kinds: Iterable[str] | None = None) -> list[dict[str, object]]:
        """Every recorded event (optionally of some kinds), oldest first, for reports and tests."""
        if self._conn is None:
            return []
        query = (
            "SELECT e.message_key, m.source, e.kind, e.address, e.status, e.action, e.issue_id, "
            "e.suppressed FROM inbox_events AS e JOIN inbox_messages AS m USING (message_key)"
        )
        wanted = list(kinds or [])
        if wanted:
            query += f" WHERE e.kind IN ({', '.join('?' for _ in wanted)})"
        try:
            rows = self._conn.execute(query + " ORDER BY e.seq", wanted).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise
        names = ("key", "source", "kind", "address", "status", "action", "issue", "suppressed")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def recorded_events(self, *, verified: bool = True) -> list[RecordedEvent]:
        """Every recorded event with all it says, oldest first.

        Only the verified ones (what changed the list, and trusted provider
        records) unless `verified=False`: then only those left for a person.
        """
        if self._conn is None:
            return []
        try:
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(inbox_events)")}
            where = f"WHERE e.unverified {'=' if verified else '!='} '' "
            why = "e.unverified"
            if "unverified" not in columns:  # a ledger from before verification: all applied
                where, why = ("" if verified else "WHERE 0 "), "''"
            rows = self._conn.execute(
                "SELECT e.kind, e.address, e.status, e.action, e.detail, e.issue_id, "
                f"e.original_message_id, m.source, e.suppressed, e.recorded_at, {why} "
                "FROM inbox_events AS e JOIN inbox_messages AS m USING (message_key) "
                f"{where}ORDER BY e.seq"
            ).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise
        return [
            RecordedEvent(
                kind=str(kind),
                address=None if address is None else str(address),
                status=str(status),
                action=str(action),
                detail=str(detail),
                issue_id=None if issue_id is None else str(issue_id),
                original_message_id=None if message_id is None else str(message_id),
                source=str(source),
                suppressed=bool(suppressed),
                recorded_at=datetime.fromisoformat(str(recorded_at)),
                unverified=str(unverified),
            )
            for (
                kind, address, status, action, detail, issue_id, message_id, source, suppressed,
                recorded_at, unverified,
            ) in rows
        ]  # fmt: skip


def _insert(conn: sqlite3.Connection, processed: ProcessedMessage, now: str) -> bool:
    """Insert one message and its events inside the caller's transaction; False if it was there."""
    cursor = conn.execute(
        "INSERT INTO inbox_messages (message_key, source, message_class, sender, subject, "
        "processed_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message_key) DO NOTHING",
        (
            processed.key,
            processed.source,
            processed.message_class,
            processed.sender,
            processed.subject,
            now,
        ),
    )
    if cursor.rowcount != 1:
        return False
    conn.executemany(
        "INSERT INTO inbox_events (message_key, kind, address, address_key, status, "
        "action, detail, issue_id, original_message_id, suppressed, recorded_at, "
        "unverified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                processed.key,
                e.kind,
                e.address,
                e.address.lower() if e.address else None,
                e.status,
                e.action,
                e.detail,
                e.issue_id,
                e.original_message_id,
                int((e.address or "").lower() in processed.suppressed),
                now,
                e.unverified,
            )
            for e in processed.events
        ],
    )
    return True


def read_recorded_events(ledger_path: Path) -> list[RecordedEvent]:
    """Every verified event the inbox has recorded, oldest first (none before the first run)."""
    with InboxStore(ledger_path, read_only=True) as store:
        return store.recorded_events()


def read_unverified_events(ledger_path: Path) -> list[RecordedEvent]:
    """Events read from mail that proved nothing, oldest first: for a person, never applied."""
    with InboxStore(ledger_path, read_only=True) as store:
        return store.recorded_events(verified=False)


def _add_unverified_column(conn: sqlite3.Connection) -> None:
    """Ledgers from before verification: add the column (their events were all applied)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(inbox_events)")}
    if "unverified" not in columns:
        conn.execute("ALTER TABLE inbox_events ADD COLUMN unverified TEXT NOT NULL DEFAULT ''")


# The states of a row whose message was handed over (or may have been).
HANDED_OVER = frozenset({"sent", "unknown", "sending"})


class LedgerSentMessages:
    """`verify.SentMessages` answered from the delivery ledger, opened once, read only.

    Like the issues, which address each Message-ID went to is read once a
    poll, an issue at a time when first needed: reading the issue's rows
    again for each returned message made a poll of thousands of bounces
    quadratic.
    """

    def __init__(self, ledger_path: Path) -> None:
        self._ledger = open_ledger_if_exists(ledger_path)
        self._issue_ids: list[str] | None = None
        self._recipients: dict[str, dict[str, str]] = {}  # issue -> Message-ID -> address

    def issue_ids(self) -> list[str]:
        if self._issue_ids is None:
            no_issues: list[str] = []
            self._issue_ids = self._read(lambda ledger: ledger.issue_ids(), no_issues)
        return self._issue_ids

    def was_sent(self, issue_id: str, address: str) -> bool:
        row = self._read(lambda ledger: ledger.lookup(issue_id, address), None)
        return row is not None and row.state in HANDED_OVER

    def recipient_of(self, message_id: str) -> str | None:
        issue_id = message_id.strip("<>").rpartition("@")[0].rpartition(".")[0]
        if issue_id not in self._recipients:
            no_rows: dict[str, str] = {}
            self._recipients[issue_id] = self._read(
                lambda ledger: _recipients(ledger, issue_id), no_rows
            )
        return self._recipients[issue_id].get(message_id)

    def _read(self, query: Callable[[Ledger], _T], empty: _T) -> _T:
        if self._ledger is None:
            return empty
        try:
            return query(self._ledger)
        except (sqlite3.OperationalError, LedgerError) as error:
            if "no such table" in str(error):
                return empty  # no deliveries table yet: nothing was sent
            raise  # locked or damaged: stop the run rather than doubt a genuine bounce

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()


def _recipients(ledger: Ledger, issue_id: str) -> dict[str, str]:
    """Message-ID -> address for every row of the issue (the first row of a Message-ID counts)."""
    recipients: dict[str, str] = {}
    for row in ledger.rows(issue_id):
        if row.message_id:
            recipients.setdefault(row.message_id, row.email)
    return recipients
