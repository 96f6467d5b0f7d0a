"""The delivery tables' schema, its version, and the migrations from older ledgers.

The version is kept in `PRAGMA user_version`; `create_or_migrate` brings a
file to `SCHEMA_VERSION` inside the caller's write transaction, so another
process never sees half a migration.
"""

from __future__ import annotations

import sqlite3

# The schema version, kept in `PRAGMA user_version`. Version 1 is the ledger
# before versions were stamped (user_version 0 with a `deliveries` table).
SCHEMA_VERSION = 3
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
    handed_over INTEGER NOT NULL DEFAULT 0,
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
    # 2 -> 3: mark a claimed row handed to the transport, so a run killed before
    # handing it over gives it back quietly instead of reporting it as possibly
    # sent twice. Rows `sending` in an older ledger may have been in flight.
    2: (
        "ALTER TABLE deliveries ADD COLUMN handed_over INTEGER NOT NULL DEFAULT 0",
        "UPDATE deliveries SET handed_over = 1 WHERE state = 'sending'",
    ),
}


def schema_version(conn: sqlite3.Connection) -> int:
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


def create_or_migrate(conn: sqlite3.Connection) -> None:
    """Create the tables, or migrate an older ledger, in the caller's transaction."""
    version = schema_version(conn)  # another process may have migrated it meanwhile
    if version == 0:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
    else:
        for step in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
