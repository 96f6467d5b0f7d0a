"""Changes to `recipients/suppressed.csv`: the people who must never be mailed.

Every change rewrites the file through a temporary file and `os.replace`, so a
reader (or a crash) never sees half a file, and takes an exclusive `flock` on a
`.lock` file beside it for the whole read-modify-write, so two writers cannot
lose each other's rows. Each call opens the lock file afresh, and Linux
`flock` locks belong to the open file, so this serialises threads of one
process (`newsletter serve` answers requests on several) as well as separate
processes (`serve`, `dispatch`, `unsubscribe` at the same moment).
Addresses are compared case-insensitively; an address is never listed twice.
Every cell goes through `csvcells`, so an address or reason that looks like a
spreadsheet formula is stored as text and read back unchanged.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from newsletter.audience.lists import SUPPRESSED_COLUMNS, SUPPRESSION_REASONS
from newsletter.core.csvcells import read_record, write_record
from newsletter.core.errors import NewsletterError


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists():
        return list(SUPPRESSED_COLUMNS), []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or SUPPRESSED_COLUMNS)
        missing = [c for c in SUPPRESSED_COLUMNS if c not in header]
        if missing:
            raise NewsletterError(
                f"{path}: the header is missing the column(s) {', '.join(missing)}; "
                "fix it before addresses can be added or removed"
            )
        return header, [read_record(row) for row in reader]


def _write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(write_record(row) for row in rows)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(temp_name, path.stat().st_mode & 0o777)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable: a power cut must not bring back the old file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def add_suppression(path: Path, address: str, reason: str, when: date | str) -> bool:
    """Add `address` to the suppression list; return False if it was already there.

    `reason` is short text: usually one of unsubscribed, hard-bounce, complaint
    or manual, or the team's own words. An address already listed keeps its
    first row (and its reason).
    """
    reason = reason.strip()
    if not reason or "\n" in reason or "\r" in reason or len(reason) > 200:
        raise NewsletterError(
            "the reason must be one line of text (up to 200 characters), "
            f"e.g. {', '.join(SUPPRESSION_REASONS)}"
        )
    address = address.strip()
    if not address or "\n" in address or "\r" in address or "," in address:
        raise NewsletterError(f"`{address}` is not an email address that can be suppressed")
    key = address.lower()
    with _locked(path):
        header, rows = _read_rows(path)
        if any(_key(row) == key for row in rows):
            return False
        stamp = when.isoformat() if isinstance(when, date) else str(when)
        rows.append({"email": address, "date": stamp, "reason": reason})
        _write_rows(path, header, rows)
    return True


def remove_suppression(path: Path, address: str, *, only_reason: str | None = None) -> bool:
    """Take `address` off the suppression list (every spelling); return False if absent.

    With `only_reason`, the address is taken off only if it is listed for that
    reason (checked under the lock): a web "undo" may reverse its own
    `one-click` row, never a hard bounce or a complaint recorded meanwhile.
    """
    key = address.strip().lower()
    with _locked(path):
        if not path.exists():
            return False
        header, rows = _read_rows(path)
        matching = [row for row in rows if _key(row) == key]
        if not matching:
            return False
        if only_reason is not None and any(
            (row.get("reason") or "").strip() != only_reason for row in matching
        ):
            return False
        _write_rows(path, header, [row for row in rows if _key(row) != key])
    return True


def suppression_reason(path: Path, address: str) -> str | None:
    """Why `address` is on the suppression list, or None when it is not."""
    key = address.strip().lower()
    _, rows = _read_rows(path)
    for row in rows:
        if _key(row) == key:
            return (row.get("reason") or "").strip()
    return None


def _key(row: dict[str, str]) -> str:
    return (row.get("email") or "").strip().lower()


def is_suppressed(path: Path, address: str) -> bool:
    """Whether `address` is on the suppression list now."""
    key = address.strip().lower()
    _, rows = _read_rows(path)
    return any(_key(row) == key for row in rows)
