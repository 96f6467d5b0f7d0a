"""The delivery ledger's file: its connections (one per thread), transactions and schema.

`LedgerFile` is what every part of the ledger shares: `deliveries.Ledger`
(claims and records), `summaries` and `daily_cap_queries` (reading) are
built on it. Writes go only to the file it opened (checked by device and
inode before each write transaction); an older schema is migrated in place
when opened for writing, a newer one is refused; every SQLite error becomes
a `LedgerError` with one clear sentence (`connection.ledger_error`).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Self

from newsletter.core.errors import LedgerError, NewsletterError
from newsletter.ledger.connection import OpenMode, ledger_error, open_connection
from newsletter.ledger.schema import SCHEMA_VERSION, create_or_migrate, schema_version


class LedgerFile:
    """The delivery ledger file at `path` (created with its parent directories on first use).

    One ledger may be used from several threads: each thread gets its own
    SQLite connection. Opening it migrates an older schema in place (or, read
    only, refuses a newer one); every SQLite error becomes a `LedgerError`.
    """

    def __init__(
        self, path: Path, *, create: bool = True, busy_timeout_ms: int | None = None
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms  # None: connection.BUSY_TIMEOUT_MS
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._empty = False
        self.host = socket.gethostname()
        self.pid = os.getpid()
        if not create and not self.path.exists():
            raise NewsletterError(f"{self.path}: there is no delivery ledger yet (nothing sent)")
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
            mode: OpenMode = "ro"
            if self._create:
                mode = "rw" if self._identity is not None else "create"
            try:
                # check_same_thread is off only so that `close` (after the threads are
                # done) can close every thread's connection.
                conn = open_connection(
                    self.path, mode, busy_timeout_ms=self._busy_timeout_ms, check_same_thread=False
                )
            except OSError as error:
                raise ledger_error(self.path, error, mode.replace("rw", "open")) from error
            except sqlite3.Error as error:
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
            version = schema_version(conn)
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
            create_or_migrate(conn)

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
            return schema_version(self._conn())

    def after_fork(self) -> None:
        """In a forked child: let go of the parent's connections, never using or closing them.

        SQLite connections must not cross a fork. The next use opens this
        process's own connection, still checked against the file the run opened.
        """
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()
        self.pid = os.getpid()

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Every row a query returns; a SQLite error becomes a `LedgerError`."""
        if self._empty:
            return []
        with self._sqlite_errors("read"):
            return self._conn().execute(sql, tuple(parameters)).fetchall()
