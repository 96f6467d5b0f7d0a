"""One way to open the ledger's SQLite file, so every owner of a table in it opens it alike.

The file holds the delivery tables (`deliveries.py`), the list events
(`list_events.py`) and the inbox records (`inbox_records.py`). Each opens
its connections here, so the pragmas that keep them from blocking or
corrupting each other are set once: write-ahead logging (a reader never
waits for a writer), `synchronous = NORMAL` (survives a process crash,
keeps commits cheap), a busy timeout (a writer waits for another's
transaction instead of failing at once), and a private file mode (the
ledger names people: 0600, its -wal and -shm too).
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Literal

from newsletter.core.errors import LedgerError
from newsletter.core.private_files import create_private_database

# How long a write waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS = 30_000
# "create": make the file (private) if missing; "rw": it must exist (never
# recreate one deleted mid-run); "ro": read only, nothing written, not even WAL mode.
OpenMode = Literal["create", "rw", "ro"]


def open_connection(
    path: Path,
    mode: OpenMode = "create",
    *,
    busy_timeout_ms: int | None = None,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """A connection to the ledger file at `path` in autocommit mode, its pragmas set.

    `busy_timeout_ms` defaults to `BUSY_TIMEOUT_MS` as it is when called.

    Raises `sqlite3.Error` or `OSError` as they come: each owner turns them
    into its own sentence (`ledger_error` for the delivery tables).
    """
    busy_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    if mode == "create":
        create_private_database(path)
        target, uri = str(path), False
    else:
        target, uri = f"{Path(path).resolve().as_uri()}?mode={mode}", True
    conn = sqlite3.connect(
        target,
        uri=uri,
        isolation_level=None,
        timeout=busy_ms / 1000,
        check_same_thread=check_same_thread,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        if mode != "ro":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


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
