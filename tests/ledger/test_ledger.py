"""The delivery ledger on real SQLite files: states, claims, crash recovery, lookups."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from newsletter.audience.lists import Recipient, Variant
from newsletter.core.errors import LedgerError
from newsletter.ledger.deliveries import (
    CLAIMABLE,
    RETRYABLE,
    SCHEMA_VERSION,
    STATES,
    UNCONFIRMED,
    Ledger,
    NewRecipient,
    Outcome,
    ledger_error,
    open_ledger_if_exists,
)

ISSUE = "2023-05-panel-reports"
VARIANT = Variant("all-sections", ("a", "b"), "All sections")


def people(n: int, start: int = 0) -> list[NewRecipient]:
    return [
        NewRecipient(
            Recipient(
                f"Person{i}@Example.org", f"Person {i}", "Org", "health", "nurse", ("comms",)
            ),
            VARIANT,
            ("all-practitioners", "health"),
            f"<{ISSUE}.{i}@example.org>",
        )
        for i in range(start, start + n)
    ]


def dead_pid() -> int:
    """The pid of a process that has already exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def claim(ledger: Ledger, n: int, run_id: str = "run-1") -> list[str]:
    rows = ledger.claim(ISSUE, run_id, n, now=0.0, max_run_attempts=5)
    return [r.address_key for r in rows]


def test_creates_its_directory_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "ledger.sqlite3"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(3))
    assert path.exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 3
    conn.close()


def test_open_if_exists_never_creates_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    assert open_ledger_if_exists(path) is None
    assert not path.parent.exists()


def test_adding_people_again_keeps_their_rows(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        assert ledger.add_recipients(ISSUE, people(5)) == 5
        keys = claim(ledger, 2)
        ledger.record(ISSUE, [(Outcome(k, "sent", "", "p-1"), None) for k in keys])
        assert ledger.add_recipients(ISSUE, people(6)) == 1
        counts = ledger.count_states(ISSUE)
    assert counts["sent"] == 2
    assert counts["pending"] == 4


def test_someone_suppressed_since_is_not_sent_but_a_sent_row_stays_sent(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(2))
        first = claim(ledger, 1)
        ledger.record(ISSUE, [(Outcome(first[0], "sent"), None)])
        unsubscribed = [
            NewRecipient(p.recipient, None, p.segments, None, "unsubscribed") for p in people(2)
        ]
        ledger.add_recipients(ISSUE, unsubscribed)
        assert ledger.count_states(ISSUE)["sent"] == 1
        assert ledger.count_states(ISSUE)["suppressed"] == 1
        row = ledger.lookup(ISSUE, "person1@example.org")
    assert row is not None and row.state == "suppressed"
    assert "unsubscribed" in row.last_error


def test_a_claim_is_committed_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(3))
        claim(ledger, 2)
        # Another connection (as another process would) sees the claim at once.
        other = sqlite3.connect(path)
        states = dict(other.execute("SELECT address_key, state FROM deliveries").fetchall())
        other.close()
    assert sorted(states.values()) == ["pending", "sending", "sending"]


def test_two_ledgers_never_claim_the_same_row(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(400))
    claimed: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    start_together = threading.Barrier(4)

    def worker(index: int) -> None:
        try:
            with Ledger(path) as mine:
                start_together.wait()
                while keys := claim(mine, 7, run_id=f"run-{index}"):
                    claimed[index].extend(keys)
                    time.sleep(0.001)  # let the others at the ledger between claims
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = [k for keys in claimed for k in keys]
    assert len(every) == 400
    assert len(set(every)) == 400
    assert sum(1 for keys in claimed if keys) > 1  # they really did share the work


def test_rows_of_a_dead_process_are_recovered_with_their_message_id(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(4))
        keys = claim(ledger, 3)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE deliveries SET claimed_pid = ? WHERE address_key = ?", (dead_pid, keys[0]))
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        ledger.hand_over(ISSUE, keys)
        # The two rows claimed by this (living) process are not taken back.
        assert ledger.recover_interrupted(ISSUE) == 1
        row = ledger.lookup(ISSUE, keys[0])
        assert row is not None and row.state == "pending"
        assert row.message_id == f"<{ISSUE}.0@example.org>"
        assert "same Message-ID" in row.last_error
        assert ledger.count_states(ISSUE)["sending"] == 2


def test_rows_a_dead_process_claimed_but_never_handed_over_go_back_quietly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(4))
        ledger.pid = dead_pid()
        keys = claim(ledger, 3)
        ledger.hand_over(ISSUE, keys[:1])
    with Ledger(path) as ledger:
        # Only the row handed to a transport may have reached anyone: only it is in flight.
        assert ledger.recover_interrupted(ISSUE) == 1
        in_flight = ledger.lookup(ISSUE, keys[0])
        assert in_flight is not None and "same Message-ID" in in_flight.last_error
        for key in keys[1:]:
            row = ledger.lookup(ISSUE, key)
            assert row is not None
            assert (row.state, row.attempts, row.last_error) == ("pending", 0, "")
        assert ledger.count_states(ISSUE)["sending"] == 0


def test_failed_temporary_rows_wait_for_their_backoff_and_attempt_limit(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(1))
        (key,) = claim(ledger, 5)
        ledger.record(ISSUE, [(Outcome(key, "failed-temporary", "451 busy", None, 100.0), None)])
        assert ledger.claim(ISSUE, "run-1", 5, now=99.0, max_run_attempts=5) == []
        assert ledger.waiting_retry_at(ISSUE, "run-1", 5) == 100.0
        (row,) = ledger.claim(ISSUE, "run-1", 5, now=100.0, max_run_attempts=5)
        assert (row.attempts, row.run_attempts) == (2, 2)
        ledger.record(ISSUE, [(Outcome(key, "failed-temporary", "451 busy", None, 0.0), None)])
        assert ledger.claim(ISSUE, "run-1", 5, now=1e9, max_run_attempts=2) == []
        # A new run starts its own count of attempts.
        (row,) = ledger.claim(ISSUE, "run-2", 5, now=0.0, max_run_attempts=2)
        assert (row.attempts, row.run_attempts) == (3, 1)


def test_a_late_result_never_undoes_a_later_state(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(1))
        (key,) = claim(ledger, 1)
        ledger.record(ISSUE, [(Outcome(key, "sent", "", "pm-1"), "<id@x>")])
        ledger.record(ISSUE, [(Outcome(key, "failed-permanent", "550"), None)])
        row = ledger.lookup(ISSUE, key)
    assert row is not None
    assert (row.state, row.provider_message_id, row.message_id) == ("sent", "pm-1", "<id@x>")
    assert row.sent_at is not None


def test_lookup_answers_did_jo_get_the_may_issue(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(2))
        keys = claim(ledger, 1)
        ledger.record(ISSUE, [(Outcome(keys[0], "sent", "", "pm-9"), None)])
        jo = ledger.lookup(ISSUE, "  PERSON0@example.ORG ")
        assert ledger.lookup(ISSUE, "nobody@example.org") is None
        assert ledger.lookup("2023-08-other", "person0@example.org") is None
    assert jo is not None
    assert jo.state == "sent" and jo.email == "Person0@Example.org"
    assert jo.recipient().name == "Person 0"
    assert jo.variant() == VARIANT


def test_summary_counts_and_completion(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.start_issue(ISSUE)
        ledger.add_recipients(ISSUE, people(3))
        keys = claim(ledger, 3)
        ledger.record(ISSUE, [(Outcome(k, "sent"), None) for k in keys[:2]])
        ledger.record(ISSUE, [(Outcome(keys[2], "failed-permanent", "550 no such user"), None)])
        ledger.finish_issue(ISSUE)
        state = ledger.summary(ISSUE)
        per_segment = ledger.count_segments(ISSUE)
        assert ledger.permanent_failures(keys[2]) == 1
    assert state.counts["sent"] == 2 and state.counts["failed-permanent"] == 1
    assert state.complete and state.started_at and state.finished_at
    assert per_segment["health"]["sent"] == 2


# --- unknown outcomes, the attempt cap, giving rows back -------------------------


def test_an_unknown_outcome_is_claimed_only_when_asked_and_once_per_run(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(2))
        keys = claim(ledger, 2)
        ledger.record(ISSUE, [(Outcome(keys[0], "unknown", "no answer"), None)])
        ledger.record(ISSUE, [(Outcome(keys[1], "failed-temporary", "451", None, 0.0), None)])
        for states in (CLAIMABLE, RETRYABLE):
            for run_id in ("run-2", "run-3"):
                claimed = ledger.claim(ISSUE, run_id, 5, now=0.0, max_run_attempts=5, states=states)
                assert keys[0] not in {r.address_key for r in claimed}
                ledger.release(ISSUE, [r.address_key for r in claimed])
        (row,) = ledger.claim(ISSUE, "run-4", 5, now=0.0, max_run_attempts=5, states=UNCONFIRMED)
        assert row.address_key == keys[0]
        ledger.record(ISSUE, [(Outcome(keys[0], "unknown", "no answer again"), None)])
        assert (
            ledger.claim(ISSUE, "run-4", 5, now=0.0, max_run_attempts=5, states=UNCONFIRMED) == []
        )


def test_a_row_given_back_returns_to_the_state_it_was_claimed_from(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(2))
        keys = claim(ledger, 2)
        ledger.record(ISSUE, [(Outcome(keys[0], "unknown", "no answer"), None)])
        ledger.release(ISSUE, [keys[1]])
        ledger.claim(ISSUE, "run-2", 5, now=0.0, max_run_attempts=5, states=UNCONFIRMED)
        ledger.release(ISSUE, [keys[0]])
        unknown, pending = ledger.lookup(ISSUE, keys[0]), ledger.lookup(ISSUE, keys[1])
    assert unknown is not None and (unknown.state, unknown.attempts) == ("unknown", 1)
    assert pending is not None and (pending.state, pending.attempts) == ("pending", 0)


def test_a_dead_run_resending_an_unknown_row_leaves_it_unknown_not_pending(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(1))
        (key,) = claim(ledger, 1)
        ledger.record(ISSUE, [(Outcome(key, "unknown", "no answer"), None)])
        ledger.pid = dead_pid()
        ledger.claim(ISSUE, "dead-run", 1, now=0.0, max_run_attempts=5, states=UNCONFIRMED)
        ledger.hand_over(ISSUE, [key])
    with Ledger(path) as ledger:
        assert ledger.recover_interrupted(ISSUE) == 1
        row = ledger.lookup(ISSUE, key)
        assert row is not None and row.state == "unknown"
        assert claim(ledger, 5, "run-9") == []  # and so no automatic run sends it


def test_rows_tried_max_total_attempts_times_give_up(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(1))
        for run in range(3):
            (row,) = ledger.claim(
                ISSUE, f"run-{run}", 5, now=0.0, max_run_attempts=5, max_total_attempts=3
            )
            ledger.record(
                ISSUE, [(Outcome(row.address_key, "failed-temporary", "451", None, 0.0), None)]
            )
        assert (
            ledger.claim(ISSUE, "run-4", 5, now=0.0, max_run_attempts=5, max_total_attempts=3) == []
        )
        row = ledger.lookup(ISSUE, row.address_key)
        assert row is not None and row.state == "gave-up" and row.attempts == 3
        assert row.last_error.startswith("gave up after 3 attempts") and "451" in row.last_error
        summary = ledger.summary(ISSUE)
        assert summary.needs_attention == {"gave-up": 1}
        # `retry` (asked for by the team) tries it once more.
        (again,) = ledger.claim(
            ISSUE, "run-5", 5, now=0.0, max_run_attempts=5, states=RETRYABLE, max_total_attempts=3
        )
        assert again.attempts == 4


def test_an_issue_with_only_unknown_and_sent_rows_is_finished(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.start_issue(ISSUE)
        ledger.add_recipients(ISSUE, people(2))
        keys = claim(ledger, 2)
        ledger.record(
            ISSUE, [(Outcome(keys[0], "sent"), None), (Outcome(keys[1], "unknown"), None)]
        )
        ledger.finish_issue(ISSUE)
        summary = ledger.summary(ISSUE)
    assert summary.complete and summary.needs_attention == {"unknown": 1}


# --- the file: versions, damage, locks, replacement ---------------------------------

FIXTURE_V1 = Path(__file__).parents[1] / "fixtures" / "ledger" / "v1-ledger.sqlite3"


def test_a_ledger_from_before_versions_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    path.parent.mkdir()
    shutil.copyfile(FIXTURE_V1, path)
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION == 3
        assert ledger.count_states(ISSUE) == {
            **dict.fromkeys(STATES, 0),
            "sent": 20,
            "failed-permanent": 1,
            "failed-temporary": 1,
            "pending": 45,
            "suppressed": 4,
        }
        sent = [r for r in ledger.rows(ISSUE, ("sent",))]
        assert sent[0].provider_message_id == "TEST000001" and sent[0].sent_at
        # The new column works: a claimed row given back returns to where it was.
        (row,) = ledger.claim(ISSUE, "run-2", 1, now=0.0, max_run_attempts=5, states=RETRYABLE)
        ledger.release(ISSUE, [row.address_key])
        back = ledger.lookup(ISSUE, row.address_key)
        assert back is not None and back.state == "failed-temporary"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_rows_sending_in_a_version_2_ledger_count_as_in_flight_once_migrated(
    tmp_path: Path,
) -> None:
    """A ledger from before hand-overs were marked cannot say which rows were handed over."""
    path = tmp_path / "ledger.sqlite3"
    shutil.copyfile(FIXTURE_V1, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE deliveries ADD COLUMN claimed_from TEXT")  # what version 2 was
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "UPDATE deliveries SET state = 'sending', claimed_from = 'pending', claimed_host = ?, "
        "claimed_pid = ? WHERE seq IN (SELECT seq FROM deliveries WHERE state = 'pending' "
        "LIMIT 2)",
        (socket.gethostname(), dead_pid()),
    )
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.schema_version == 3
        assert ledger.recover_interrupted(ISSUE) == 2
        assert ledger.count_states(ISSUE)["pending"] == 45


def test_a_migration_that_cannot_finish_leaves_the_old_ledger_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    shutil.copyfile(FIXTURE_V1, path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with pytest.raises(LedgerError, match="is locked by another process"):
            Ledger(path, busy_timeout_ms=50)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    conn = sqlite3.connect(path)
    columns = {c[1] for c in conn.execute("PRAGMA table_info(deliveries)")}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert "claimed_from" not in columns
    conn.close()
    # Read-only users (report, schedule) read an old ledger without migrating it.
    with Ledger(path, create=False) as ledger:
        assert ledger.count_states(ISSUE)["sent"] == 20


def test_a_ledger_from_a_newer_version_is_refused_naming_the_version(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(1))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    for create in (True, False):
        with pytest.raises(
            LedgerError, match=r"newer version of newsletter \(ledger schema version 7"
        ):
            Ledger(path, create=create)


def test_a_file_that_is_not_a_ledger_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_text("id,email\n1,jo@example.org\n" * 200)
    for create in (True, False):
        with pytest.raises(LedgerError, match="damaged or is not a delivery ledger") as caught:
            Ledger(path, create=create)
        assert "restore it from a backup" in str(caught.value)
    assert path.read_text().startswith("id,email")  # left as it was


def test_writes_stop_when_the_file_is_replaced_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(3))
        copy = tmp_path / "copy.sqlite3"
        shutil.copyfile(path, copy)
        os.replace(copy, path)
        with pytest.raises(LedgerError, match="was replaced by another file"):
            claim(ledger, 1)
    with Ledger(path) as ledger:
        claim(ledger, 1)
        path.unlink()
        with pytest.raises(LedgerError, match="was deleted while this run was using it"):
            ledger.record(ISSUE, [])


def test_a_folder_that_cannot_be_written_is_named_as_such_not_as_a_full_disk(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    for number in (errno.EROFS, errno.EACCES):
        message = str(ledger_error(path, OSError(number, os.strerror(number)), "create"))
        assert "check that this user may write to it and to its folder" in message
        assert "full" not in message
    full = str(ledger_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "write"))
    assert "(is it full?)" in full


def test_claims_take_every_state_in_the_order_people_were_added(tmp_path: Path) -> None:
    """A failed-temporary row added early comes before pending rows added later, as it always did."""
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(6))
        first_two = claim(ledger, 2)
        ledger.record(
            ISSUE,
            [(Outcome(key, "failed-temporary", "451 busy", None, 0.0), None) for key in first_two],
        )
        taken = claim(ledger, 3, run_id="run-2")
        rest = claim(ledger, 10, run_id="run-2")

    assert taken == [f"person{i}@example.org" for i in (0, 1, 2)]
    assert rest == [f"person{i}@example.org" for i in (3, 4, 5)]


def test_a_claim_costs_the_same_however_long_the_list(tmp_path: Path) -> None:
    """Each claim of 20 used to read every pending row, so a send to N people did N² work.

    Counted in SQLite's virtual-machine steps (not time), on the ledger's own
    connection: claiming 20 from 10,000 people, with the attempt cap on as a
    send has it, must cost about what it costs from 1,000.
    """

    def steps_per_claim(people_on_list: int) -> float:
        with Ledger(tmp_path / f"{people_on_list}.db") as ledger:
            ledger.add_recipients(ISSUE, people(people_on_list))
            ledger.claim(ISSUE, "run-1", 20, now=0.0, max_run_attempts=5, max_total_attempts=9)
            counted = [0]

            def count() -> int:
                counted[0] += 1
                return 0  # carry on

            ledger._conn().set_progress_handler(count, 10)
            for _ in range(10):
                rows = ledger.claim(
                    ISSUE, "run-1", 20, now=0.0, max_run_attempts=5, max_total_attempts=9
                )
                assert len(rows) == 20
            return counted[0] / 10

    assert steps_per_claim(10_000) < 2 * steps_per_claim(1_000)


def _in_a_forked_child(work) -> int:  # type: ignore[no-untyped-def]
    """Run `work()` in a forked child; its exit code (0 when it returned, 1 when it raised)."""
    pid = os.fork()
    if pid == 0:
        try:
            work()
        except BaseException:
            os._exit(1)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_sending_process_writes_through_its_own_connection(tmp_path: Path) -> None:
    """The parent's connection is neither used nor closed by the child, and both see each write."""
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add_recipients(ISSUE, people(2))
        first, second = claim(ledger, 2)

        def record_first() -> None:
            ledger.after_fork()
            ledger.record(ISSUE, [(Outcome(first, "sent"), None)])

        assert _in_a_forked_child(record_first) == 0
        ledger.record(ISSUE, [(Outcome(second, "sent"), None)])  # the parent's, still open
        assert ledger.count_states(ISSUE)["sent"] == 2


def test_a_forked_sending_process_refuses_a_ledger_replaced_since_the_run_opened_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.add_recipients(ISSUE, people(1))
        (key,) = claim(ledger, 1)
        shutil.copy(path, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", path)

        def record() -> None:
            ledger.after_fork()
            ledger.record(ISSUE, [(Outcome(key, "sent"), None)])

        assert _in_a_forked_child(record) == 1  # LedgerError: not the file the run opened
