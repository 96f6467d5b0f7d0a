"""The ledger file as a team meets it: upgraded, damaged, locked, read-only, from a newer version.

Every command that reads or writes the ledger (report, schedule, send,
retry, dispatch) must say what is wrong in one line and exit 1, never show a
traceback, and never send anything it cannot record.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.ledger import connection
from newsletter.ledger import deliveries as ledger_module
from newsletter.ledger.inbox_records import InboxStore
from newsletter.ledger.list_events import prepare_list_events, read_list_events
from tests.support.project import ISSUE, edit_issue, speed_up
from tests.support.smtp import SmtpTestServer

SEND_AT = "2023-05-15T09:00:00+01:00"
FIXTURE_V1 = Path(__file__).parents[1] / "fixtures" / "ledger" / "v1-ledger.sqlite3"
REPO = Path(__file__).resolve().parents[2]
COMMANDS = {
    "report": ("report", ISSUE),
    "schedule": ("schedule",),
    "send": ("send", ISSUE, "--send", "--yes"),
    "retry": ("retry", ISSUE),
    "dispatch": ("dispatch", "--now", SEND_AT),
}


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


@pytest.fixture
def relay(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> SmtpTestServer:
    smtp_server.configure(monkeypatch)
    speed_up(project_dir)
    edit_issue(project_dir, approved=True)
    return smtp_server


def ledger_path(project_dir: Path) -> Path:
    return project_dir / "var" / "ledger.sqlite3"


def one_clear_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    return line


def test_a_ledger_written_before_schema_versions_is_upgraded_and_nobody_is_sent_twice(
    project_dir: Path, relay: SmtpTestServer
) -> None:
    path = ledger_path(project_dir)
    path.parent.mkdir()
    shutil.copyfile(FIXTURE_V1, path)
    conn = sqlite3.connect(path)
    already = {
        k for (k,) in conn.execute("SELECT address_key FROM deliveries WHERE state = 'sent'")
    }
    conn.close()

    result = run(project_dir, "send", ISSUE, "--send", "--yes")

    assert result.exit_code == 0, result.output
    assert "already sent before 20" in result.output
    received = set(relay.by_recipient())
    assert len(received) == 46 and not received & already  # the pending and the temporary
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == ledger_module.SCHEMA_VERSION
    states = Counter(s for (s,) in conn.execute("SELECT state FROM deliveries"))
    conn.close()
    assert states == {"sent": 66, "failed-permanent": 1, "suppressed": 4}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_ledger_from_a_newer_version_is_refused_by_every_command(
    project_dir: Path, relay: SmtpTestServer, name: str
) -> None:
    path = ledger_path(project_dir)
    path.parent.mkdir()
    shutil.copyfile(FIXTURE_V1, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.close()

    line = one_clear_line(run(project_dir, *COMMANDS[name]))

    assert "newer version of newsletter (ledger schema version 9" in line
    assert relay.messages == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_damaged_ledger_is_one_clear_line_from_every_command(
    project_dir: Path, relay: SmtpTestServer, name: str
) -> None:
    path = ledger_path(project_dir)
    path.parent.mkdir()
    path.write_bytes(b"this is a spreadsheet someone saved over the ledger\n" * 100)

    line = one_clear_line(run(project_dir, *COMMANDS[name]))

    assert str(path) in line and "damaged or is not a delivery ledger" in line
    assert relay.messages == []


@pytest.fixture
def locked_ledger(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ledger another process holds an exclusive lock on, for longer than we wait."""
    path = ledger_path(project_dir)
    path.parent.mkdir()
    shutil.copyfile(FIXTURE_V1, path)
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    yield path
    holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_locked_ledger_is_one_clear_line_from_every_command(
    project_dir: Path, relay: SmtpTestServer, locked_ledger: Path, name: str
) -> None:
    line = one_clear_line(run(project_dir, *COMMANDS[name]))

    assert str(locked_ledger) in line and "is locked by another process" in line
    assert relay.messages == []


# A read-only var/: a read-only bind mount in a private mount namespace (util-linux
# `unshare`), which holds even for root, who ignores file permissions.
READ_ONLY_VAR = 'mount --bind var var && mount -o remount,bind,ro var && exec "$@"'


def read_only_run(
    project_dir: Path, server: SmtpTestServer, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_HOST": server.host,
        "NEWSLETTER_SMTP_PORT": str(server.port),
        "NEWSLETTER_SMTP_SECURITY": "none",
    }
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", READ_ONLY_VAR, "sh",
         sys.executable, "-m", "newsletter", "--root", str(project_dir), *args],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_read_only_var_is_one_clear_line_from_every_command(
    project_dir: Path, relay: SmtpTestServer, name: str
) -> None:
    path = ledger_path(project_dir)
    path.parent.mkdir()
    shutil.copyfile(FIXTURE_V1, path)

    done = read_only_run(project_dir, relay, *COMMANDS[name])

    assert "Traceback" not in done.stdout + done.stderr
    assert relay.messages == []
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert str(path.parent) in line and "check that this user may write" in line


# --- one way to open the file, whichever part of it is written first -----------------


@pytest.mark.parametrize("first", ["deliveries", "list events", "inbox"])
def test_whichever_table_is_written_first_the_file_is_private_and_in_wal_mode(
    tmp_path: Path, first: str
) -> None:
    """`serve`, `inbox` or `send` may be the first to create the ledger; each names people."""
    path = tmp_path / "var" / "ledger.sqlite3"
    if first == "deliveries":
        ledger_module.Ledger(path).close()
    elif first == "list events":
        prepare_list_events(path)
    else:
        InboxStore(path).close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reading_a_ledger_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    assert ledger_module.read_summary(path, "2023-05-panel-reports") is None
    with InboxStore(path, read_only=True):
        pass
    assert read_list_events(path) == []
    assert not path.parent.exists()
