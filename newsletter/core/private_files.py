"""Files that hold personal data, readable by their owner only, whatever the umask.

The delivery ledger (every address and what it was sent), the outbox and the
rendered `.eml` samples name real people. Created with the default modes, a
umask of 022 (or 000, as some cron and container setups have) leaves them
readable by every account on the machine. These helpers set the modes
explicitly instead: 0700 for folders, 0600 for files.

Folders are made private only when these helpers create them: an existing
folder (the project root, a `--out` the user chose) keeps its mode. Files
are created private, and an existing one of ours is tightened, so a ledger
made before this rule existed stops being world-readable on its next use.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from newsletter.core.atomicfile import write_bytes_atomic

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

# SQLite names a database's write-ahead log and shared-memory index after it.
SQLITE_COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parent folders, each readable by the owner only (0700)."""
    missing: list[Path] = []
    cursor = Path(path)
    while not cursor.exists() and cursor != cursor.parent:
        missing.append(cursor)
        cursor = cursor.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made by another process meanwhile: not ours to change
        # The umask can only take bits away, but it may take the owner's too.
        os.chmod(folder, PRIVATE_DIR_MODE)
    return path


def _tighten(fd: int) -> None:
    """Make an open file of ours 0600 (a file someone else owns is left alone)."""
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != PRIVATE_FILE_MODE:
        os.fchmod(fd, PRIVATE_FILE_MODE)


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """An `opener` for `open()` (or a plain `os.open`) that creates the file 0600.

    Use it as `open(path, "a", opener=private_opener)`; `os.O_CREAT` is added.
    """
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        _tighten(fd)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically, as a file only its owner can read (0600).

    Through the package's one atomic writer (`atomicfile`): a reader never
    sees half a file, the file and its directory are fsynced, and a link at
    `path` is replaced rather than written through.
    """
    return write_bytes_atomic(path, data, mode=PRIVATE_FILE_MODE)


def write_private_text(path: Path, text: str) -> Path:
    """`write_private` for UTF-8 text."""
    return write_private(path, text.encode("utf-8"))


def create_private_database(path: Path) -> Path:
    """Prepare `path` for `sqlite3.connect` so the database and its -wal/-shm are 0600.

    SQLite creates a new database file with mode 0644 less the umask, and
    gives its -wal, -shm and -journal files the database file's own mode.
    Creating the (empty) file 0600 first, which SQLite accepts as a new
    database, therefore makes all of them private.

    An existing database (or companion, left by an older version with a looser
    mode) is tightened by name and never opened here: closing any descriptor
    of a file releases every POSIX lock this process holds on it, SQLite's own
    connections' included, and another process then believes it is alone with
    the write-ahead log (and may truncate the shared memory this one has mapped).
    """
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    for name in (path, *(path.with_name(path.name + s) for s in SQLITE_COMPANION_SUFFIXES)):
        with contextlib.suppress(FileNotFoundError):
            _tighten_path(name)
    return path


def _tighten_path(path: Path) -> None:
    """`_tighten` by name, without opening the file."""
    info = os.stat(path)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != PRIVATE_FILE_MODE:
        os.chmod(path, PRIVATE_FILE_MODE)
