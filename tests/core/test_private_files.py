"""Files naming real people are readable by their owner only (0600, folders 0700), whatever the umask.

The ledger and its -wal/-shm, the outbox, the rendered `.eml` samples and the
dispatch log/lock are checked after the real commands that make them, under
a lenient umask (022) and under none at all (000).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.audience.lists import Recipient
from newsletter.cli import cli
from newsletter.core.private_files import write_private
from newsletter.ledger.deliveries import Ledger, NewRecipient
from tests.support.project import ISSUE, edit_issue, speed_up

SEND_AT = "2023-05-15T09:00:00+01:00"


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def modes_under(top: Path) -> dict[str, str]:
    """Every file and folder under `top` (itself included), relative name -> octal mode."""
    found = {".": mode(top)}
    for path in top.rglob("*"):
        found[str(path.relative_to(top))] = mode(path)
    return found


def assert_private(top: Path) -> None:
    found = modes_under(top)
    assert len(found) > 1, f"nothing was written under {top}"
    wrong = {
        name: m for name, m in found.items() if m != ("0o700" if (top / name).is_dir() else "0o600")
    }
    assert wrong == {}, f"not private under {top}: {wrong}"


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def test_the_ledger_and_its_wal_and_shm_are_private(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    ledger = Ledger(path)
    try:
        ledger.start_issue("2024-01")
        ledger.add_recipients(
            "2024-01", [NewRecipient(Recipient(email="jo@example.org", name="Jo"), None)]
        )
        wal = path.with_name(path.name + "-wal")
        shm = path.with_name(path.name + "-shm")
        assert wal.exists() and shm.exists()  # WAL mode, connection still open
        assert {p.name: mode(p) for p in (path, wal, shm)} == {
            "ledger.sqlite3": "0o600",
            "ledger.sqlite3-wal": "0o600",
            "ledger.sqlite3-shm": "0o600",
        }
        assert mode(path.parent) == "0o700"
    finally:
        ledger.close()


def test_a_ledger_made_world_readable_before_is_tightened_on_next_use(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    path.chmod(0o644)
    Ledger(path).close()
    assert mode(path) == "0o600"


def test_a_real_send_leaves_the_ledger_and_outbox_private(project_dir: Path, umask: int) -> None:
    speed_up(project_dir)
    result = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 0, result.output
    assert list((project_dir / "outbox" / "new").iterdir())  # the messages were written
    assert_private(project_dir / "outbox")
    assert_private(project_dir / "var")


def test_dispatch_leaves_its_log_lock_ledger_and_outbox_private(
    project_dir: Path, umask: int
) -> None:
    speed_up(project_dir)
    edit_issue(project_dir, approved=True)
    result = run(project_dir, "dispatch", "--now", SEND_AT)
    assert result.exit_code == 0, result.output
    var = project_dir / "var"
    assert (var / "dispatch.log").is_file() and (var / "dispatch.lock").is_file()
    assert_private(var)
    assert_private(project_dir / "outbox")


def test_rendered_files_and_their_folders_are_private(project_dir: Path, umask: int) -> None:
    result = run(project_dir, "render", ISSUE)
    assert result.exit_code == 0, result.output
    out = project_dir / "out"
    assert any(p.suffix == ".eml" for p in (out / ISSUE).iterdir())
    assert_private(out)


def test_render_into_an_existing_folder_keeps_the_folder_but_writes_files_private(
    project_dir: Path, tmp_path: Path, umask: int
) -> None:
    chosen = tmp_path / "shared"
    chosen.mkdir(mode=0o755)
    chosen.chmod(0o755)
    result = run(project_dir, "render", ISSUE, "--out", str(chosen))
    assert result.exit_code == 0, result.output
    assert mode(chosen) == "0o755"  # the user's own folder is not changed
    assert {mode(p) for p in chosen.iterdir()} == {"0o600"}


def test_write_private_replaces_a_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    link = tmp_path / "sample.eml"
    link.symlink_to(victim)
    write_private(link, b"Subject: hi\n\nhello\n")
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert not link.is_symlink() and link.read_bytes().startswith(b"Subject: hi")
    assert mode(link) == "0o600"
