"""`recipients/suppressed.csv`, the people who must never be mailed: the one module that reads and writes it.

The file is the team's: they open it in Excel or an editor, save it with a
byte-order mark, `Email,Date,Reason` headers or semicolons. Whatever the
reader accepts (`csvfile.csv_rows`), the writers accept too, and they keep the
file's own dialect: a new row is appended in the file's separator, line
ending and column order, and removing an address drops its lines only, so
every other byte a person wrote stays as it was. A row the reader cannot
understand is never rewritten in silence: a write is refused with its
file, line and column (`SuppressedFileError`) until someone fixes it.

Every address is validated (email-validator, `checks.check_email`) before
it is written; what an outsider sends (a bounce, a webhook) can never put a
line in the file that would stop `validate` or `send`.

Each change is one read-modify-write under an exclusive `flock` on a `.lock`
file beside the real file, written through `atomicfile` (temporary file,
fsync, `os.replace`, directory fsync). A symbolic link (to a list kept
elsewhere inside the project; one leading out of it is refused, as every
project file's is) is written through: the lock and the write are on its
target, so the link stays a link and the target gets the row. Each call opens the lock file afresh, and Linux
`flock` locks belong to the open file, so this serialises threads of one
process (`newsletter serve`) as well as separate processes. Addresses are
compared case-insensitively; an address is never listed twice. Every cell
goes through `csvcells`, so a value that looks like a spreadsheet formula is
stored as text and read back unchanged.
"""

from __future__ import annotations

import csv
import fcntl
import io
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.checks import check_email
from newsletter.core.csvcells import read_cell, write_record
from newsletter.core.csvfile import CSV_ENCODING, CsvHeader, CsvRow, csv_rows, header_of
from newsletter.core.errors import NewsletterError, Problem, SuppressedFileError

SUPPRESSED_COLUMNS = ("email", "date", "reason")
SUPPRESSION_REASONS = ("unsubscribed", "hard-bounce", "complaint", "manual")
_BOM = "\ufeff"


@dataclass(frozen=True)
class SuppressedAddress:
    """One row of suppressed.csv: who, since when, and why."""

    email: str
    date: str
    reason: str


@dataclass(frozen=True)
class AddResult:
    """What one batch of additions did: added, already listed, and refused (with why)."""

    added: tuple[str, ...] = ()
    already: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (address as given, why)


def read_suppressed(path: Path) -> tuple[dict[str, SuppressedAddress], list[Problem]]:
    """Parse suppressed.csv (a missing file means nobody is suppressed), keyed by lower-cased address."""
    suppressed: dict[str, SuppressedAddress] = {}
    problems: list[Problem] = []
    if not path.exists():
        return suppressed, problems
    for row in csv_rows(path, SUPPRESSED_COLUMNS, problems):
        problems += row.problems
        entry = _entry(row, problems)
        if entry is not None:
            # The first row of an address is the one that counts.
            suppressed.setdefault(entry.email.lower(), entry)
    return suppressed, problems


def _entry(row: CsvRow, problems: list[Problem]) -> SuppressedAddress | None:
    address = read_cell(row.get("email"))  # we write this file: undo our formula quoting
    if check_email(address) is None:
        why = f"invalid email `{address}`" if address else "no email address"
        problems.append(row.problem("email", f"{why} on row {row.line}"))
        return None
    return SuppressedAddress(address, read_cell(row.get("date")), read_cell(row.get("reason")))


def suppression_reason(path: Path, address: str) -> str | None:
    """Why `address` is on the suppression list, or None when it is not."""
    entry = read_suppressed(path)[0].get(address.strip().lower())
    return None if entry is None else entry.reason.strip()


def is_suppressed(path: Path, address: str) -> bool:
    """Whether `address` is in suppressed.csv now (see `audience.standing` for the whole answer)."""
    return address.strip().lower() in read_suppressed(path)[0]


def address_problem(address: str) -> str | None:
    """Why `address` cannot go on the list (None when it can): email-validator's syntax check."""
    if not address or check_email(address) is None:
        shown = address.encode("unicode_escape").decode("ascii")[:120]
        return f"`{shown}` is not a valid email address"
    return None


def _reason_problem(reason: str) -> str | None:
    if not reason or "\n" in reason or "\r" in reason or "\0" in reason or len(reason) > 200:
        return (
            "the reason must be one line of text (up to 200 characters), "
            f"e.g. {', '.join(SUPPRESSION_REASONS)}"
        )
    return None


def add_suppression(path: Path, address: str, reason: str, when: date | str) -> bool:
    """Add `address` to the suppression list; return False if it was already there.

    `reason` is short text: usually one of unsubscribed, hard-bounce, complaint
    or manual, or the team's own words. An address already listed keeps its
    first row (and its reason). An invalid address is refused (NewsletterError).
    """
    result = add_suppressions(path, [(address, reason)], when)
    if result.refused:
        raise NewsletterError(result.refused[0][1])
    return bool(result.added)


def add_suppressions(path: Path, entries: Iterable[tuple[str, str]], when: date | str) -> AddResult:
    """Add each (address, reason) not yet listed, in one locked write; invalid ones are refused.

    Nothing is written when nothing is added, so a repeated request leaves
    the file (and its modification time) as it was.
    """
    return add_suppression_batches(path, [entries], when)[0]


def add_suppression_batches(
    path: Path, batches: Iterable[Iterable[tuple[str, str]]], when: date | str
) -> list[AddResult]:
    """`add_suppressions` for each batch in turn, with one read and one locked write for all.

    Each batch's result is what calling `add_suppressions` on it after the
    batches before it would have given (an address an earlier batch added is
    `already` in a later one), so a caller acting for many messages (`inbox`)
    can say what each one did while the file is rewritten and fsynced once.
    """
    stamp = when.isoformat() if isinstance(when, date) else str(when)
    checked = [_checked(entries) for entries in batches]
    results: list[AddResult] = []
    with _locked(path) as target:
        listed = _SuppressedText.read(target)
        for valid, refused in checked:
            added: list[str] = []
            already: list[str] = []
            for address, reason in valid:
                if listed.contains(address):
                    already.append(address)
                else:
                    listed.append({"email": address, "date": stamp, "reason": reason})
                    added.append(address)
            results.append(AddResult(tuple(added), tuple(already), refused))
        if any(result.added for result in results):
            listed.write(target)
    return results


def _checked(
    entries: Iterable[tuple[str, str]],
) -> tuple[list[tuple[str, str]], tuple[tuple[str, str], ...]]:
    """The (address, reason) pairs that may be written, stripped, and those refused with why."""
    valid: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for address, reason in entries:
        address, reason = address.strip(), reason.strip()
        why = address_problem(address) or _reason_problem(reason)
        if why:
            refused.append((address, why))
        else:
            valid.append((address, reason))
    return valid, tuple(refused)


def remove_suppression(path: Path, address: str, *, only_reason: str | None = None) -> bool:
    """Take `address` off the suppression list (every spelling); return False if absent.

    With `only_reason`, the address is taken off only if it is listed for that
    reason (checked under the lock): a web "undo" may reverse its own
    `one-click` row, never a hard bounce or a complaint recorded meanwhile.
    """
    with _locked(path) as target:
        if not target.exists():
            return False
        listed = _SuppressedText.read(target)
        matching = listed.rows_of(address)
        if not matching:
            return False
        if only_reason is not None and any(
            read_cell(row.get("reason")).strip() != only_reason for row in matching
        ):
            return False
        listed.drop(matching)
        listed.write(target)
    return True


def suppressed_target(path: Path) -> Path:
    """The file a write to `path` changes: a symbolic link's target (followed all the way)."""
    return path.resolve() if path.is_symlink() else path


@contextmanager
def _locked(path: Path) -> Iterator[Path]:
    """Hold the lock of the file `path` really is, and give that file's path."""
    target = suppressed_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield target
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _SuppressedText:
    """suppressed.csv as its lines, for changes that keep everything a person wrote."""

    def __init__(self, header: CsvHeader | None, bom: bool, lines: list[str], rows: list[CsvRow]):
        self.header = header
        self.bom = bom
        self.lines = lines
        self.rows = rows
        # Lower-cased addresses listed: `contains` stays cheap for a batch of thousands.
        self.keys = {_key_of(row) for row in rows}

    @classmethod
    def read(cls, path: Path) -> _SuppressedText:
        if not path.exists() or not path.read_bytes().strip():
            return cls(None, False, [], [])
        problems: list[Problem] = []
        rows = list(csv_rows(path, SUPPRESSED_COLUMNS, problems))
        for row in rows:
            problems += row.problems
            _entry(row, problems)
        if problems:
            raise SuppressedFileError(
                [
                    *problems,
                    Problem(path, 1, 1, "fix these rows before addresses are added or removed"),
                ]
            )
        with path.open(newline="", encoding=CSV_ENCODING) as handle:  # keep \r\n as written
            text = handle.read()
        bom = path.read_bytes().startswith(_BOM.encode())
        return cls(rows[0].header if rows else _header_of(path), bom, _lines(text), rows)

    def contains(self, address: str) -> bool:
        return address.strip().lower() in self.keys

    def rows_of(self, address: str) -> list[CsvRow]:
        key = address.strip().lower()
        return [row for row in self.rows if _key_of(row) == key]

    def append(self, values: dict[str, str]) -> None:
        if self.header is None:
            self.lines = [",".join(SUPPRESSED_COLUMNS) + "\n"]
            self.header = CsvHeader(Path(), ",", SUPPRESSED_COLUMNS)
        newline = _line_ending(self.lines[0])
        if self.lines and not self.lines[-1].endswith(("\n", "\r")):
            self.lines[-1] += newline
        cells = write_record(values)
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.header.separator, lineterminator=newline).writerow(
            [cells.get(name, "") for name in self.header.names]
        )
        self.lines.append(buffer.getvalue())
        row = CsvRow(self.header, len(self.lines), dict(values))
        self.rows.append(row)
        self.keys.add(_key_of(row))

    def drop(self, rows: list[CsvRow]) -> None:
        """Remove the lines of `rows` (a quoted value may span several lines)."""
        starts = sorted(row.line for row in self.rows)
        doomed: set[int] = set()
        for row in rows:
            later = [s for s in starts if s > row.line]
            end = later[0] if later else len(self.lines) + 1
            doomed.update(range(row.line, end))
        self.lines = [line for n, line in enumerate(self.lines, 1) if n not in doomed]
        self.rows = [row for row in self.rows if row not in rows]
        self.keys = {_key_of(row) for row in self.rows}

    def write(self, path: Path) -> None:
        write_text_atomic(path, (_BOM if self.bom else "") + "".join(self.lines))


def _key_of(row: CsvRow) -> str:
    """The address a row lists, as addresses are compared (lower case)."""
    return read_cell(row.get("email")).lower()


def _header_of(path: Path) -> CsvHeader:
    """The header of a file with no rows (csv_rows gives the header with each row)."""
    with path.open(newline="", encoding=CSV_ENCODING) as handle:
        return header_of(path, handle.readline(), SUPPRESSED_COLUMNS)


def _lines(text: str) -> list[str]:
    """`text` as lines with their endings, split only at line feeds, as `csv` counts them."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def _line_ending(line: str) -> str:
    return "\r\n" if line.endswith("\r\n") else "\n"
