"""The ledger's one connection factory: opening the file again never loosens another's hold on it.

POSIX locks belong to a process, and closing *any* descriptor of a file drops
every lock the process holds on it. SQLite keeps the write-ahead log's readers
and writers apart with such locks on the -shm file, so code that opens and
closes the ledger's files by hand while a connection is live (to set their
mode, say) lets another process believe it is alone: it may reset the log
under a reader, or truncate the shared memory the reader has mapped (the
process then dies of SIGBUS, as a dispatch once did mid-send).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from newsletter.ledger.connection import open_connection

CHECKPOINT = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0)
print(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
"""


def checkpoint_from_another_process(path: Path) -> int:
    """1 when a reader elsewhere still holds the log (the checkpoint must wait), else 0."""
    done = subprocess.run(
        [sys.executable, "-c", CHECKPOINT, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_a_reader_keeps_its_hold_while_the_same_process_opens_the_ledger_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    with closing(open_connection(path)) as writer:
        writer.execute("CREATE TABLE t (n INTEGER)")
        writer.execute("INSERT INTO t VALUES (1)")
    with closing(open_connection(path)) as reader:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
        with closing(open_connection(path)) as writer:  # a second owner, as a run has
            writer.execute("INSERT INTO t VALUES (2)")
        # The reader's snapshot is still in use: another process must not reset the log.
        assert checkpoint_from_another_process(path) == 1
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
        reader.execute("COMMIT")
    assert checkpoint_from_another_process(path) == 0
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
