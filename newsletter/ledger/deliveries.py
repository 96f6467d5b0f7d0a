"""The delivery ledger: one SQLite row per (issue, recipient), the single source of truth.

This docstring is the delivery protocol. Every rule about who may be mailed,
when, and how often is written here first.

States. A row moves pending -> sending -> one of
- `sent`: the relay or provider confirmed it took the message;
- `failed-temporary`: refused for now (4xx, 429, a connection that failed
  before the message was handed over); tried again after a back-off;
- `failed-permanent`: refused for a reason about *this recipient* (no such
  mailbox, mailbox disabled, an inactive recipient). Only this state feeds
  hard-bounce suppression;
- `unknown`: the whole message was handed over (SMTP: the end of DATA was
  sent; HTTP: the request body was sent) and then no answer came (a timeout,
  a dropped connection). It may well have been delivered (RFC 5321
  §4.5.3.2.6, RFC 1047), so it is never sent again silently: `send`,
  `dispatch` and `retry` leave it alone; only `retry --unknown` claims it, at
  most once per run;
- `gave-up`: tried `retry.max_total_attempts` times in all (every run added
  up: `attempts`), so no automatic run (`send`, `dispatch`) claims it again;
  `retry` tries it once more per run, when the team asks.
People on the suppression list get a `suppressed` row so the report can say
why they were not mailed. `sent`, `failed-permanent`, `unknown`, `gave-up`
and `suppressed` are final for `dispatch`: an issue with nobody pending,
sending or failed-temporary is finished.

Refusals that are not about the recipient (a content filter's 5.7.1 at the
end of DATA, a message too big, a refused sender, a suspended account) are
never recorded as anyone's failure: the transport stops the run, the rows not
yet handed over go back to the state they were claimed from, and nobody is
suppressed. Several identical recipient refusals in a row (`send.py`'s
circuit breaker) are treated the same way: the run stops and nobody in that
streak is recorded or suppressed.

Claiming. A row is claimed (`sending`, committed) *before* a transport is
called, and marked after, so a run killed at any moment leaves the ledger
saying exactly who might have been mailed: `sending` rows of a dead process
are recovered (back to `pending`, or to `unknown`/`gave-up` if that is what
they were claimed from) and sent again with the same Message-ID; `sent` rows
never are. So after a hard kill at most the messages in flight (one chunk per
connection) can be repeated. Rows claimed but never handed to a transport
(Ctrl-C, SIGTERM, a run stopped by a fatal error) are released back to the
state they were claimed from (`claimed_from`), their attempt uncounted.
Every claim counts one attempt in `attempts` (all runs) and `run_attempts`
(this run); a `failed-temporary` row keeps the moment before which it is not
tried again (back-off).

Stopping. On SIGTERM or Ctrl-C a run stops claiming, lets each connection
finish and record the chunk it is sending, releases the rest, and says how
many were sent. A result that cannot be written (disk full, I/O error) stops
the run before another message is handed over; its rows stay `sending` and
are recovered as in flight by the next run, unless emptying the write-ahead
log (`make_room`) leaves room to record them as the run stops.

The file itself. Writes go only to the file the run opened: before each
write transaction the path is checked to still be that file (device and
inode), so a ledger deleted or replaced mid-run stops the run instead of
recording into a file nobody will read again. The schema version is kept in
`PRAGMA user_version`; an older ledger is migrated in place in one
transaction, a newer one is refused. SQLite errors (locked, damaged, read
only, disk full) become a `LedgerError` with one clear sentence.

The states are spelled once, in `State`: a transport answers `sent`,
`failed-temporary`, `failed-permanent` or `unknown` and the send run records
that answer as it is; `DeliverySummary` is the one count of them that the
report, the schedule, dispatch and the archive read.

Claims and results are written in batches, one transaction each, so the
ledger costs a few commits per hundred messages. Two processes may share a
ledger: a claim is `BEGIN IMMEDIATE` + `UPDATE ... WHERE state IN (...)`, so a
row is only ever claimed by one of them.

Each row keeps what is needed to rebuild the message (the person's details,
their variant) so a resumed run or `retry` never re-reads the lists.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from newsletter.audience.lists import Recipient, Variant
from newsletter.core.errors import NewsletterError
from newsletter.core.private_files import create_private_database

State = Literal[
    "pending",
    "sending",
    "sent",
    "failed-temporary",
    "failed-permanent",
    "unknown",
    "gave-up",
    "suppressed",
]
STATES: tuple[State, ...] = (
    "pending",
    "sending",
    "sent",
    "failed-temporary",
    "failed-permanent",
    "unknown",
    "gave-up",
    "suppressed",
)
# States `send` and `dispatch` claim; `sending` rows are only taken back by `recover_interrupted`.
CLAIMABLE: tuple[State, ...] = ("pending", "failed-temporary")
# What `retry` claims, and `retry --unknown`: only when the team asks.
RETRYABLE: tuple[State, ...] = ("failed-temporary", "gave-up")
UNCONFIRMED: tuple[State, ...] = ("unknown",)
# States of people still to be sent to, now or after a back-off.
UNFINISHED: tuple[State, ...] = ("pending", "sending", "failed-temporary")
# States the team is asked to look at: never sent to again without being asked.
NEEDS_ATTENTION: tuple[State, ...] = ("unknown", "gave-up")

# The schema version, kept in `PRAGMA user_version`. Version 1 is the ledger
# before versions were stamped (user_version 0 with a `deliveries` table).
SCHEMA_VERSION = 2
# How long a write waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS = 30_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id TEXT NOT NULL,
    address_key TEXT NOT NULL,
    email TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    organisation TEXT NOT NULL DEFAULT '',
    agency TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL DEFAULT '',
    lists TEXT NOT NULL DEFAULT '[]',
    segments TEXT NOT NULL DEFAULT '[]',
    extra TEXT NOT NULL DEFAULT '{}',
    variant_key TEXT NOT NULL DEFAULT '',
    variant_label TEXT NOT NULL DEFAULT '',
    section_ids TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    run_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    claimed_host TEXT,
    claimed_pid INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    message_id TEXT,
    provider_message_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    claimed_from TEXT,
    UNIQUE (issue_id, address_key)
);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (issue_id, state, seq);
CREATE INDEX IF NOT EXISTS deliveries_address ON deliveries (address_key, state);
CREATE TABLE IF NOT EXISTS issue_runs (
    issue_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    updated_at TEXT NOT NULL
);
"""
# From version N to N + 1, run in the same transaction as the version stamp.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 -> 2: remember the state a row was claimed from, so a row given back (or
    # recovered from a dead run) returns to it: an `unknown` row claimed by
    # `retry --unknown` must never come back as `pending`, which would be resent.
    1: ("ALTER TABLE deliveries ADD COLUMN claimed_from TEXT",),
}


class LedgerError(NewsletterError):
    """The ledger file cannot be used: locked, damaged, read-only, full, replaced or too new."""


def ledger_error(path: Path, error: sqlite3.Error | OSError, doing: str) -> LedgerError:
    """One sentence for the person reading it: what went wrong with the ledger, and what to do."""
    name = getattr(error, "sqlite_errorname", "") or ""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return LedgerError(
            f"{path} is locked by another process ({reason}); another send, retry or "
            "dispatch may be running: try again when it has finished"
        )
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return LedgerError(
            f"{path} is damaged or is not a delivery ledger ({reason}); restore it from a "
            "backup. Do not delete it: it is the record of who has already been sent to"
        )
    not_allowed = isinstance(error, OSError) and error.errno in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
    )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")) or (
        not_allowed
    ):
        # Even reading a WAL ledger needs to write its -shm file beside it.
        return LedgerError(
            f"cannot {doing} the delivery ledger {path} ({reason}); check that this user may "
            f"write to it and to its folder {path.parent} (reading it needs that too)"
        )
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or isinstance(error, OSError):
        return LedgerError(
            f"cannot {doing} the delivery ledger {path} ({reason}); check the disk holding "
            f"{path.parent} (is it full?)"
        )
    return LedgerError(f"cannot {doing} the delivery ledger {path} ({reason})")


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _time_text(moment: float) -> str:
    """A moment as the ledger writes times (UTC, to the second), so they sort as text."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class DeliveryRow:
    """One recipient of one issue, as the ledger knows them."""

    issue_id: str
    address_key: str
    email: str
    name: str
    organisation: str
    agency: str
    role: str
    lists: tuple[str, ...]
    segments: tuple[str, ...]
    extra: dict[str, str]
    variant_key: str
    variant_label: str
    section_ids: tuple[str, ...]
    state: State
    attempts: int
    run_attempts: int
    last_error: str
    message_id: str | None
    provider_message_id: str | None
    created_at: str
    updated_at: str
    sent_at: str | None

    def recipient(self) -> Recipient:
        """The person, rebuilt without re-reading the lists."""
        return Recipient(
            email=self.email,
            name=self.name,
            organisation=self.organisation,
            agency=self.agency,
            role=self.role,
            lists=self.lists,
            extra=self.extra,
        )

    def variant(self) -> Variant:
        return Variant(self.variant_key, self.section_ids, self.variant_label)


_ROW_COLUMNS = (
    "issue_id, address_key, email, name, organisation, agency, role, lists, segments, extra, "
    "variant_key, variant_label, section_ids, state, attempts, run_attempts, last_error, "
    "message_id, provider_message_id, created_at, updated_at, sent_at"
)


def _row(values: Sequence[object]) -> DeliveryRow:
    (
        issue_id, address_key, email, name, organisation, agency, role, lists, segments, extra,
        variant_key, variant_label, section_ids, state, attempts, run_attempts, last_error,
        message_id, provider_message_id, created_at, updated_at, sent_at,
    ) = values  # fmt: skip
    return DeliveryRow(
        issue_id=str(issue_id),
        address_key=str(address_key),
        email=str(email),
        name=str(name),
        organisation=str(organisation),
        agency=str(agency),
        role=str(role),
        lists=tuple(json.loads(str(lists))),
        segments=tuple(json.loads(str(segments))),
        extra=dict(json.loads(str(extra))),
        variant_key=str(variant_key),
        variant_label=str(variant_label),
        section_ids=tuple(json.loads(str(section_ids))),
        state=str(state),  # type: ignore[arg-type]
        attempts=int(str(attempts)),
        run_attempts=int(str(run_attempts)),
        last_error=str(last_error),
        message_id=None if message_id is None else str(message_id),
        provider_message_id=None if provider_message_id is None else str(provider_message_id),
        created_at=str(created_at),
        updated_at=str(updated_at),
        sent_at=None if sent_at is None else str(sent_at),
    )


@dataclass(frozen=True)
class NewRecipient:
    """A person to add to an issue's ledger (as pending, or as suppressed)."""

    recipient: Recipient
    variant: Variant | None
    segments: tuple[str, ...] = ()
    message_id: str | None = None
    suppressed_reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed row, to be recorded."""

    address_key: str
    state: State
    detail: str = ""
    provider_message_id: str | None = None
    next_attempt_at: float = 0.0


@dataclass(frozen=True)
class DeliverySummary:
    """What the ledger says about one issue: how many people are in each state, and when.

    The one summary of an issue's delivery, read by the send run, the
    `report` and `schedule` commands, `dispatch` and the archive.
    """

    issue_id: str
    counts: Mapping[str, int] = field(default_factory=dict)  # every state, zeros included
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def started(self) -> bool:
        """True once anyone has been added to the issue's ledger."""
        return self.total > 0

    @property
    def complete(self) -> bool:
        """True once a run has finished and nobody is left to send to (now or later)."""
        unfinished = sum(self.counts.get(s, 0) for s in UNFINISHED)
        return self.finished_at is not None and self.started and unfinished == 0

    @property
    def needs_attention(self) -> dict[str, int]:
        """People never sent to again unless the team asks: `unknown` and `gave-up`, with how many."""
        return {
            state: self.counts.get(state, 0) for state in NEEDS_ATTENTION if self.counts.get(state)
        }

    def counts_present(self) -> dict[str, int]:
        """The states someone is in, with how many (states nobody is in left out)."""
        return {state: n for state, n in self.counts.items() if n}


class Ledger:
    """The delivery ledger at `path` (created with its parent directories on first use).

    One `Ledger` may be used from several threads: each thread gets its own
    SQLite connection. Opening it migrates an older schema in place (or, read
    only, refuses a newer one); every SQLite error becomes a `LedgerError`.
    """

    def __init__(
        self, path: Path, *, create: bool = True, busy_timeout_ms: int | None = None
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._empty = False
        self.host = socket.gethostname()
        self.pid = os.getpid()
        if not create and not self.path.exists():
            raise NewsletterError(f"{self.path}: there is no delivery ledger yet (nothing sent)")
        if create:
            try:
                create_private_database(self.path)  # the ledger names people: 0600, -wal/-shm too
            except OSError as error:
                raise ledger_error(self.path, error, "create") from error
        self._create = create
        try:
            self._prepare_schema(self._conn())
            self._identity = self._file_identity()
        except BaseException:
            self.close()
            raise

    # -- connections --------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # A thread's first connection once the ledger is open must find the very file
            # the run opened: never let SQLite create a fresh one where it was deleted.
            self._check_still_ours()
            opened = self._identity is not None
            try:
                if self._create and opened:
                    conn = sqlite3.connect(
                        f"{self.path.resolve().as_uri()}?mode=rw",
                        uri=True,
                        isolation_level=None,
                        timeout=60,
                        check_same_thread=False,
                    )
                elif self._create:
                    # Each thread has its own connection; check_same_thread is off only
                    # so that `close` (after the threads are done) can close them all.
                    conn = sqlite3.connect(
                        self.path, isolation_level=None, timeout=60, check_same_thread=False
                    )
                else:
                    conn = sqlite3.connect(
                        f"{self.path.resolve().as_uri()}?mode=ro",
                        uri=True,
                        isolation_level=None,
                        timeout=60,
                        check_same_thread=False,
                    )
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                if self._create:
                    conn.execute("PRAGMA journal_mode = WAL")
                    # WAL + NORMAL survives a process crash (only a power cut can lose
                    # the last commits), and keeps commits cheap.
                    conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as error:
                if conn is not None:
                    conn.close()
                raise ledger_error(self.path, error, "open") from error
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _sqlite_errors(self, doing: str) -> Iterator[None]:
        """Turn any SQLite error in the block into a `LedgerError` saying what to do."""
        try:
            yield
        except sqlite3.Error as error:
            raise ledger_error(self.path, error, doing) from error

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (BEGIN IMMEDIATE), so claims never race.

        Taken only while `path` is still the file this ledger opened.
        """
        self._check_still_ours()
        with self._sqlite_errors("write"):
            conn = conn or self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with suppress(sqlite3.Error):  # SQLite may have rolled back already
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _file_identity(self) -> tuple[int, int]:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            raise LedgerError(
                f"{self.path} was deleted while this run was using it, so the record of who "
                "has been sent to is gone; the run stopped before sending more. Restore the "
                "ledger from a backup before sending again, or everyone will be mailed again"
            ) from None
        except OSError as error:
            raise ledger_error(self.path, error, "read") from error
        return status.st_dev, status.st_ino

    def _check_still_ours(self) -> None:
        """Stop if `path` is no longer the file this ledger opened (deleted or replaced)."""
        if self._identity is None:
            return
        if self._file_identity() != self._identity:
            raise LedgerError(
                f"{self.path} was replaced by another file while this run was using it; the "
                "run stopped before sending more, so nobody is mailed twice. Put the original "
                "ledger back (or restore it from a backup), then run the same command again"
            )

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        """Create the tables, or migrate an older ledger in one transaction; refuse a newer one."""
        with self._sqlite_errors("read"):
            version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} was written by a newer version of newsletter (ledger schema "
                f"version {version}; this version knows up to {SCHEMA_VERSION}): upgrade "
                "newsletter before using this ledger"
            )
        # A file with no deliveries yet (e.g. made by `newsletter inbox`) reads as empty.
        self._empty = version == 0 and not self._create
        if not self._create or version == SCHEMA_VERSION:
            return  # reading an older ledger is fine: only its writers migrate it
        with self._transaction(conn):
            version = _schema_version(conn)  # another process may have migrated it meanwhile
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            else:
                for step in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[step]:
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def make_room(self) -> None:
        """Fold the write-ahead log into the ledger file and empty it, freeing the disk it held.

        On a full disk the log is what grew; emptying it can leave room to
        record the results of messages already handed over, so that they are
        not sent again. Best effort: a log other processes are reading stays.
        """
        with suppress(sqlite3.Error):
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def schema_version(self) -> int:
        with self._sqlite_errors("read"):
            return _schema_version(self._conn())

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------

    def start_issue(self, issue_id: str) -> None:
        """Note that a run of this issue has begun (the first start is kept)."""
        now = _now_text()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO issue_runs (issue_id, started_at, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (issue_id) DO UPDATE SET finished_at = NULL, updated_at = ?",
                (issue_id, now, now, now),
            )

    def finish_issue(self, issue_id: str) -> None:
        now = _now_text()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE issue_runs SET finished_at = ?, updated_at = ? WHERE issue_id = ?",
                (now, now, issue_id),
            )

    def add_recipients(self, issue_id: str, people: Iterable[NewRecipient]) -> int:
        """Add people in one transaction; return how many rows were new.

        Someone already in the ledger keeps their row (a re-run never resets a
        `sent`); someone suppressed since an earlier run, and not yet sent to,
        is marked `suppressed`.
        """
        now = _now_text()
        added = 0
        with self._transaction() as conn:
            for person in people:
                r, v = person.recipient, person.variant
                state = "suppressed" if person.suppressed_reason is not None else "pending"
                cursor = conn.execute(
                    "INSERT INTO deliveries (issue_id, address_key, email, name, organisation, "
                    "agency, role, lists, segments, extra, variant_key, variant_label, "
                    "section_ids, state, last_error, message_id, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (issue_id, address_key) DO UPDATE SET "
                    "state = 'suppressed', last_error = excluded.last_error, updated_at = ? "
                    "WHERE excluded.state = 'suppressed' "
                    "AND state IN ('pending', 'failed-temporary', 'unknown', 'gave-up')",
                    (
                        issue_id,
                        r.key,
                        r.email,
                        r.name,
                        r.organisation,
                        r.agency,
                        r.role,
                        json.dumps(list(r.lists)),
                        json.dumps(list(person.segments)),
                        json.dumps(dict(r.extra)),
                        v.key if v else "",
                        v.label if v else "",
                        json.dumps(list(v.section_ids) if v else []),
                        state,
                        f"suppressed: {person.suppressed_reason}"
                        if person.suppressed_reason
                        else "",
                        person.message_id,
                        now,
                        now,
                        now,
                    ),
                )
                added += cursor.rowcount if cursor.rowcount > 0 else 0
        return added

    def recover_interrupted(self, issue_id: str, *, stale_after_seconds: float = 3600) -> int:
        """Take back rows left `sending` by a process that is gone; return how many.

        A row is taken back when the process that claimed it (on this host) is no
        longer running, or when its claim is older than `stale_after_seconds`
        (the claimer is on another host, or its pid was reused). It goes back to
        `pending`, to be sent again with its stored Message-ID, unless it was
        claimed from `unknown` or `gave-up`: then it goes back there, never to be
        resent without being asked.
        """
        with self._sqlite_errors("read"):
            claimers = (
                self._conn()
                .execute(
                    "SELECT DISTINCT claimed_host, claimed_pid FROM deliveries "
                    "WHERE issue_id = ? AND state = 'sending'",
                    (issue_id,),
                )
                .fetchall()
            )
        cutoff = datetime.fromtimestamp(
            datetime.now(UTC).timestamp() - stale_after_seconds, UTC
        ).isoformat(timespec="seconds")
        recovered = 0
        note = "interrupted while sending; sent again with the same Message-ID"
        back = (
            "state = CASE WHEN claimed_from IN ('unknown', 'gave-up') THEN claimed_from "
            "ELSE 'pending' END, last_error = CASE WHEN claimed_from IN ('unknown', 'gave-up') "
            "THEN 'interrupted while sending again; it may have arrived' ELSE ? END"
        )
        with self._transaction() as conn:
            for host, pid in claimers:
                gone = host == self.host and pid != self.pid and not _pid_alive(int(pid))
                if gone:
                    cursor = conn.execute(
                        f"UPDATE deliveries SET {back}, updated_at = ? "
                        "WHERE issue_id = ? AND state = 'sending' AND claimed_host IS ? "
                        "AND claimed_pid IS ?",
                        (note, _now_text(), issue_id, host, pid),
                    )
                    recovered += cursor.rowcount
            cursor = conn.execute(
                f"UPDATE deliveries SET {back}, updated_at = ? "
                "WHERE issue_id = ? AND state = 'sending' AND updated_at < ? "
                "AND NOT (claimed_host IS ? AND claimed_pid IS ?)",
                (note, _now_text(), issue_id, cutoff, self.host, self.pid),
            )
            recovered += cursor.rowcount
        return recovered

    def claim(
        self,
        issue_id: str,
        run_id: str,
        limit: int,
        *,
        now: float,
        max_run_attempts: int,
        states: Sequence[State] = CLAIMABLE,
        max_total_attempts: int | None = None,
    ) -> list[DeliveryRow]:
        """Mark up to `limit` rows `sending` for this run, committed before anything is sent.

        Rows come in the order they were added. `pending` rows are always
        taken; `failed-temporary` rows when their back-off has passed and this
        run has tried them fewer than `max_run_attempts` times (a new run starts
        afresh); `unknown` and `gave-up` rows (asked for by `retry`) once per
        run. With `max_total_attempts`, `pending` and `failed-temporary` rows
        tried that often in all become `gave-up` first, and are not taken.
        """
        stamp = _now_text()
        with self._transaction() as conn:
            capped = [s for s in states if s in ("pending", "failed-temporary")]
            if max_total_attempts is not None and capped:
                conn.execute(
                    "UPDATE deliveries SET state = 'gave-up', updated_at = ?, last_error = "
                    "'gave up after ' || attempts || ' attempts (retry.max_total_attempts)' "
                    "|| CASE WHEN last_error = '' THEN '' ELSE ': ' || last_error END "
                    f"WHERE issue_id = ? AND state IN ({_marks(capped)}) AND attempts >= ?",
                    (stamp, issue_id, *capped, max_total_attempts),
                )
            rows = conn.execute(
                "UPDATE deliveries SET claimed_from = state, state = 'sending', "
                "attempts = attempts + 1, "
                "run_attempts = CASE WHEN run_id IS ? THEN run_attempts + 1 ELSE 1 END, "
                "run_id = ?, claimed_host = ?, claimed_pid = ?, updated_at = ? "
                "WHERE seq IN (SELECT seq FROM deliveries WHERE issue_id = ? "
                f"AND state IN ({_marks(states)}) AND (state = 'pending' "
                "OR (state = 'failed-temporary' AND (run_id IS NOT ? "
                "OR (run_attempts < ? AND next_attempt_at <= ?))) "
                "OR (state IN ('unknown', 'gave-up') AND run_id IS NOT ?)) "
                f"ORDER BY seq LIMIT ?) RETURNING {_ROW_COLUMNS}",
                (
                    run_id,
                    run_id,
                    self.host,
                    self.pid,
                    stamp,
                    issue_id,
                    *states,
                    run_id,
                    max_run_attempts,
                    now,
                    run_id,
                    limit,
                ),
            ).fetchall()
        return [_row(values) for values in rows]

    def release(self, issue_id: str, address_keys: Iterable[str]) -> None:
        """Give back claimed rows never handed to a transport (Ctrl-C, a stopped run).

        Each goes back to the state it was claimed from, its attempt uncounted.
        """
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE deliveries SET state = COALESCE(claimed_from, 'pending'), "
                "attempts = MAX(0, attempts - 1), run_attempts = MAX(0, run_attempts - 1) "
                "WHERE issue_id = ? AND address_key = ? AND state = 'sending'",
                [(issue_id, key) for key in address_keys],
            )

    def record(
        self,
        issue_id: str,
        outcomes: Iterable[tuple[Outcome, str | None]],
        *,
        now: float | None = None,
    ) -> None:
        """Record what happened to claimed rows, in one transaction.

        Each item is (outcome, Message-ID used). Only rows still `sending` are
        changed, so a late result can never undo a later state. `now` (the
        run's clock) is when they were sent, what daily caps count.
        """
        stamp = _now_text()
        sent_at = stamp if now is None else _time_text(now)
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE deliveries SET state = ?, last_error = ?, "
                "provider_message_id = COALESCE(?, provider_message_id), "
                "message_id = COALESCE(?, message_id), next_attempt_at = ?, updated_at = ?, "
                "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
                "WHERE issue_id = ? AND address_key = ? AND state = 'sending'",
                [
                    (
                        o.state,
                        o.detail,
                        o.provider_message_id,
                        message_id,
                        o.next_attempt_at,
                        stamp,
                        o.state,
                        sent_at,
                        issue_id,
                        o.address_key,
                    )
                    for o, message_id in outcomes
                ],
            )

    # -- reading ------------------------------------------------------------

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Every row a query returns; a SQLite error becomes a `LedgerError`."""
        if self._empty:
            return []
        with self._sqlite_errors("read"):
            return self._conn().execute(sql, tuple(parameters)).fetchall()

    def lookup(self, issue_id: str, address: str) -> DeliveryRow | None:
        """Did this person get this issue? Their row, or None if they were never in its audience."""
        found = self._read(
            f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE issue_id = ? AND address_key = ?",
            (issue_id, address.strip().lower()),
        )
        return _row(found[0]) if found else None

    def rows(self, issue_id: str, states: Sequence[State] | None = None) -> Iterator[DeliveryRow]:
        """Every row of an issue (optionally only some states), in the order they were added."""
        if self._empty:
            return
        with self._sqlite_errors("read"):
            conn = self._conn()
            if states is None:
                cursor = conn.execute(
                    f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE issue_id = ? ORDER BY seq",
                    (issue_id,),
                )
            else:
                cursor = conn.execute(
                    f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE issue_id = ? "
                    f"AND state IN ({_marks(states)}) ORDER BY seq",
                    (issue_id, *states),
                )
            for values in cursor:
                yield _row(values)

    def count_states(self, issue_id: str) -> dict[str, int]:
        """How many rows of the issue are in each state (every state listed)."""
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for state, count in self._read(
            "SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY state",
            (issue_id,),
        ):
            counts[str(state)] = int(str(count))
        return counts

    def count_segments(self, issue_id: str) -> dict[str, dict[str, int]]:
        """Per segment, how many of its people are in each state."""
        per: dict[str, dict[str, int]] = {}
        for segment, state, count in self._read(
            "SELECT j.value, d.state, COUNT(*) FROM deliveries AS d, json_each(d.segments) AS j "
            "WHERE d.issue_id = ? GROUP BY j.value, d.state",
            (issue_id,),
        ):
            per.setdefault(str(segment), dict[str, int].fromkeys(STATES, 0))[str(state)] = int(
                str(count)
            )
        return dict(sorted(per.items()))

    def waiting_retry_at(self, issue_id: str, run_id: str, max_run_attempts: int) -> float | None:
        """When the next failed-temporary row of this run may be tried again (None: none left)."""
        found = self._read(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE issue_id = ? "
            "AND state = 'failed-temporary' AND run_id IS ? AND run_attempts < ?",
            (issue_id, run_id, max_run_attempts),
        )
        value = found[0][0] if found else None
        return None if value is None else float(str(value))

    def unsent_variants(self, issue_id: str, states: Sequence[State] = UNFINISHED) -> list[Variant]:
        """The variants of the rows in `states` (to render them before claiming anything)."""
        return [
            Variant(str(key), tuple(json.loads(str(ids))), str(label))
            for key, ids, label in self._read(
                "SELECT DISTINCT variant_key, section_ids, variant_label FROM deliveries "
                f"WHERE issue_id = ? AND variant_key != '' AND state IN ({_marks(states)})",
                (issue_id, *states),
            )
        ]

    def count_sent_since(self, since: float) -> int:
        """How many messages of any issue were sent after `since` (for `rate.per_day`)."""
        value = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND sent_at > ?",
                (_time_text(since),),
            )
            .fetchone()[0]
        )
        return int(value)

    def nth_sent_since(self, since: float, n: int) -> float | None:
        """When the `n`-th (from 0) oldest message sent after `since` was sent, or None."""
        value = (
            self._conn()
            .execute(
                "SELECT sent_at FROM deliveries WHERE state = 'sent' AND sent_at > ? "
                "ORDER BY sent_at LIMIT 1 OFFSET ?",
                (_time_text(since), max(0, n)),
            )
            .fetchone()
        )
        return None if value is None else datetime.fromisoformat(str(value[0])).timestamp()

    def permanent_failures(self, address: str) -> int:
        """How many issues have failed permanently for this address (for hard-bounce suppression)."""
        found = self._read(
            "SELECT COUNT(*) FROM deliveries WHERE address_key = ? AND state = 'failed-permanent'",
            (address.strip().lower(),),
        )
        return int(str(found[0][0])) if found else 0

    def summary(self, issue_id: str) -> DeliverySummary:
        """Counts per state, and when delivery of the issue started and finished."""
        run = self._read(
            "SELECT started_at, finished_at FROM issue_runs WHERE issue_id = ?", (issue_id,)
        )
        started, finished = run[0] if run else (None, None)
        return DeliverySummary(
            issue_id=issue_id,
            counts=self.count_states(issue_id),
            started_at=None if started is None else str(started),
            finished_at=None if finished is None else str(finished),
        )

    def issue_ids(self) -> list[str]:
        return [
            str(v[0]) for v in self._read("SELECT DISTINCT issue_id FROM deliveries ORDER BY 1")
        ]


def _marks(values: Sequence[object]) -> str:
    """SQL placeholders for `values`: "?, ?, ?"."""
    return ", ".join("?" for _ in values)


def _schema_version(conn: sqlite3.Connection) -> int:
    """The ledger's schema version: `user_version`, or 1 for a ledger from before versions."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if (
        version == 0
        and conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'"
        ).fetchone()
    ):
        return 1
    return version


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_ledger_if_exists(path: Path) -> Ledger | None:
    """The ledger read-only if it exists (a dry run must not create one), else None."""
    return Ledger(path, create=False) if path.exists() else None


def read_summary(ledger_path: Path, issue_id: str) -> DeliverySummary | None:
    """What the ledger says about an issue, without creating a ledger just by looking.

    None when nothing has been recorded (no ledger file, or no tables yet).
    """
    if not ledger_path.exists():
        return None
    try:
        with Ledger(ledger_path, create=False) as ledger:
            return ledger.summary(issue_id)
    except LedgerError as error:
        if "no such table" in str(error.__cause__):
            return None  # a first dispatch has created the file but not yet its tables
        raise
