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
saying exactly who might have been mailed. Claiming and handing over are two
steps: just before a chunk is given to a transport, its rows are marked
`handed_over` (committed), and only then is the transport called. So a
`sending` row of a dead process is one of two kinds when recovered:
- not handed over (claimed, its message built or queued, never given to a
  transport): nobody can have received it, so it goes back quietly to the
  state it was claimed from, its attempt uncounted, like a released row;
- handed over, with no answer recorded (in flight): it may have arrived. It
  goes back to `pending` (or to `unknown`/`gave-up` if that is what it was
  claimed from) and is sent again with the same Message-ID, and only these
  are reported as possibly sent twice.
`sent` rows never are sent again. So after a hard kill at most the messages
in flight (one chunk per connection) can be repeated. Rows claimed but never
handed to a transport in a run that stops cleanly (Ctrl-C, SIGTERM, a fatal
error) are released back to the state they were claimed from
(`claimed_from`), their attempt uncounted.
Every claim counts one attempt in `attempts` (all runs) and `run_attempts`
(this run); a `failed-temporary` row keeps the moment before which it is not
tried again (back-off).

Suppression at hand-over. The audience is read into the ledger when a run
starts, but a run can last hours (a slow relay, Microsoft 365's limits), and
someone may unsubscribe meanwhile. So just before each chunk is handed over,
its people are checked against the suppression list as it is now
(`recipients/suppressed.csv`, re-read only when the file changed): anyone on
it is recorded `suppressed` instead of being sent to, and counted with the
run's suppressed people. What `newsletter unsubscribe` says ("no further
issue will be sent to them") is then true from the next chunk on.

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

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from newsletter.core.errors import LedgerError
from newsletter.ledger.connection import BUSY_TIMEOUT_MS, ledger_error
from newsletter.ledger.daily_cap_queries import DailyCapQueries
from newsletter.ledger.rows import (
    CLAIMABLE,
    NEEDS_ATTENTION,
    RETRYABLE,
    ROW_COLUMNS,
    STATES,
    UNCONFIRMED,
    UNFINISHED,
    DeliveryRow,
    NewRecipient,
    Outcome,
    State,
    marks,
    now_text,
    row_from,
    time_text,
)
from newsletter.ledger.schema import SCHEMA_VERSION
from newsletter.ledger.summaries import DeliverySummary, SummaryQueries, read_summary

# The names the rest of the package has always imported from here.
__all__ = [
    "BUSY_TIMEOUT_MS",
    "CLAIMABLE",
    "NEEDS_ATTENTION",
    "RETRYABLE",
    "SCHEMA_VERSION",
    "STATES",
    "UNCONFIRMED",
    "UNFINISHED",
    "DeliveryRow",
    "DeliverySummary",
    "Ledger",
    "LedgerError",
    "NewRecipient",
    "Outcome",
    "State",
    "ledger_error",
    "open_ledger_if_exists",
    "read_summary",
]


# Where a recovered row in flight goes back to, and the note it keeps.
_BACK_IN_FLIGHT = (
    "state = CASE WHEN claimed_from IN ('unknown', 'gave-up') THEN claimed_from "
    "ELSE 'pending' END, last_error = CASE WHEN claimed_from IN ('unknown', 'gave-up') "
    "THEN 'interrupted while sending again; it may have arrived' ELSE ? END"
)
_IN_FLIGHT_NOTE = "in flight when a run was interrupted; sent again with the same Message-ID"


class Ledger(SummaryQueries, DailyCapQueries):
    """The delivery ledger at `path`: claims, hand-overs and records, as the protocol above says.

    One `Ledger` may be used from several threads: each thread gets its own
    SQLite connection (`ledger_file.LedgerFile`).
    """

    def __init__(
        self, path: Path, *, create: bool = True, busy_timeout_ms: int | None = None
    ) -> None:
        super().__init__(path, create=create, busy_timeout_ms=busy_timeout_ms)
        # (issue, run) pairs whose pending rows' attempt cap has been applied.
        self._capped_pending: set[tuple[str, str]] = set()

    # -- writing ------------------------------------------------------------

    def start_issue(self, issue_id: str) -> None:
        """Note that a run of this issue has begun (the first start is kept)."""
        now = now_text()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO issue_runs (issue_id, started_at, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (issue_id) DO UPDATE SET finished_at = NULL, updated_at = ?",
                (issue_id, now, now, now),
            )

    def finish_issue(self, issue_id: str) -> None:
        now = now_text()
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
        now = now_text()
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
        """Take back rows left `sending` by a process that is gone; return how many were in flight.

        A row is taken back when the process that claimed it (on this host) is no
        longer running, or when its claim is older than `stale_after_seconds`
        (the claimer is on another host, or its pid was reused). A row never
        handed over goes back quietly to the state it was claimed from, its
        attempt uncounted: nobody can have received it. A row handed over (in
        flight) goes back to `pending`, to be sent again with its stored
        Message-ID, unless it was claimed from `unknown` or `gave-up`: then it
        goes back there, never to be resent without being asked. Only the
        rows in flight are counted: only they may reach someone twice.
        """
        in_flight = 0
        with self._transaction() as conn:
            for dead, parameters in self._dead_claims(conn, issue_id, stale_after_seconds):
                conn.execute(
                    "UPDATE deliveries SET state = COALESCE(claimed_from, 'pending'), "
                    "attempts = MAX(0, attempts - 1), updated_at = ? "
                    f"WHERE issue_id = ? AND state = 'sending' AND handed_over = 0 AND {dead}",
                    (now_text(), issue_id, *parameters),
                )
                in_flight += conn.execute(
                    f"UPDATE deliveries SET {_BACK_IN_FLIGHT}, updated_at = ? "
                    f"WHERE issue_id = ? AND state = 'sending' AND handed_over = 1 AND {dead}",
                    (_IN_FLIGHT_NOTE, now_text(), issue_id, *parameters),
                ).rowcount
        return in_flight

    def _dead_claims(
        self, conn: sqlite3.Connection, issue_id: str, stale_after_seconds: float
    ) -> list[tuple[str, tuple[object, ...]]]:
        """SQL conditions (with their parameters) that pick the claims of processes that are gone."""
        claimers = conn.execute(
            "SELECT DISTINCT claimed_host, claimed_pid FROM deliveries "
            "WHERE issue_id = ? AND state = 'sending'",
            (issue_id,),
        ).fetchall()
        dead: list[tuple[str, tuple[object, ...]]] = [
            ("claimed_host IS ? AND claimed_pid IS ?", (host, pid))
            for host, pid in claimers
            if host == self.host and pid != self.pid and not _pid_alive(int(pid))
        ]
        cutoff = time_text(datetime.now(UTC).timestamp() - stale_after_seconds)
        dead.append(
            (
                "updated_at < ? AND NOT (claimed_host IS ? AND claimed_pid IS ?)",
                (cutoff, self.host, self.pid),
            )
        )
        return dead

    def hand_over(self, issue_id: str, address_keys: Iterable[str]) -> None:
        """Mark claimed rows as handed to a transport: committed just before it is called.

        From here on a row may reach its recipient, so a run killed now
        leaves it in flight (see the protocol), never quietly given back.
        """
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE deliveries SET handed_over = 1, updated_at = ? "
                "WHERE issue_id = ? AND address_key = ? AND state = 'sending'",
                [(now_text(), issue_id, key) for key in address_keys],
            )

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
        stamp = now_text()
        # A pending row's attempts only change while it is claimed, so its cap is
        # checked once a run; reading every pending row at each claim made a send
        # of N people do work growing with N².
        first_claim = (issue_id, run_id) not in self._capped_pending
        capped = [s for s in states if s == "failed-temporary" or (s == "pending" and first_claim)]
        with self._transaction() as conn:
            if max_total_attempts is not None and capped:
                conn.execute(
                    "UPDATE deliveries SET state = 'gave-up', updated_at = ?, last_error = "
                    "'gave up after ' || attempts || ' attempts (retry.max_total_attempts)' "
                    "|| CASE WHEN last_error = '' THEN '' ELSE ': ' || last_error END "
                    f"WHERE issue_id = ? AND state IN ({marks(capped)}) AND attempts >= ?",
                    (stamp, issue_id, *capped, max_total_attempts),
                )
            rows = conn.execute(
                "UPDATE deliveries SET claimed_from = state, state = 'sending', "
                "handed_over = 0, attempts = attempts + 1, "
                "run_attempts = CASE WHEN run_id IS ? THEN run_attempts + 1 ELSE 1 END, "
                "run_id = ?, claimed_host = ?, claimed_pid = ?, updated_at = ? "
                "WHERE seq IN (SELECT seq FROM deliveries WHERE issue_id = ? "
                f"AND state IN ({marks(states)}) AND (state = 'pending' "
                "OR (state = 'failed-temporary' AND (run_id IS NOT ? "
                "OR (run_attempts < ? AND next_attempt_at <= ?))) "
                "OR (state IN ('unknown', 'gave-up') AND run_id IS NOT ?)) "
                f"ORDER BY seq LIMIT ?) RETURNING {ROW_COLUMNS}",
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
        if max_total_attempts is not None:
            self._capped_pending.add((issue_id, run_id))
        return [row_from(values) for values in rows]

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
        stamp = now_text()
        sent_at = stamp if now is None else time_text(now)
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
    def waiting_retry_at(self, issue_id: str, run_id: str, max_run_attempts: int) -> float | None:
        """When the next failed-temporary row of this run may be tried again (None: none left)."""
        found = self._read(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE issue_id = ? "
            "AND state = 'failed-temporary' AND run_id IS ? AND run_attempts < ?",
            (issue_id, run_id, max_run_attempts),
        )
        value = found[0][0] if found else None
        return None if value is None else float(str(value))


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
