"""Read the team's CSV files (recipient lists, suppressed.csv) the way a person means them.

Lists come from Excel, Outlook and CRM exports and from hand edits, so what is
unambiguous is accepted: a byte-order mark (Excel's "CSV UTF-8"), header
names in any case with spaces around them, values with spaces around them, a
file separated by semicolons or tabs (Excel's CSV where the decimal mark is a
comma) instead of commas, and rows left completely empty. What is ambiguous is
a located `Problem`, never a guess: a file that is not UTF-8, a header without
a column the file needs, a column named twice, a row with more or fewer
values than the header has columns (usually a value with the separator in it
that is not in double quotes), a value under a column with no name.

`csv_rows` reads one file: problems with the file itself go into the list it
is given, problems with a row travel with that row, so a caller can report
every problem of every file at once and still stream the rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from newsletter.core.checks import did_you_mean
from newsletter.core.errors import Problem

# Excel's "CSV UTF-8" starts the file with a byte-order mark; reading it as
# plain utf-8 would turn the first column name into "\ufeffemail".
CSV_ENCODING = "utf-8-sig"
# The separators a spreadsheet writes, and how a person calls them.
SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs"}


@dataclass(frozen=True)
class CsvHeader:
    """A file's first line: its separator and its column names, trimmed and lower-cased."""

    path: Path
    separator: str
    names: tuple[str, ...]  # "" for a column with no name

    @property
    def separated_by(self) -> str:
        return SEPARATORS[self.separator]

    def column(self, name: str) -> int:
        """Where the column `name` is, counting from 1 as editors do (1 if absent)."""
        return self.names.index(name) + 1 if name in self.names else 1


class CsvRow(NamedTuple):
    """One non-empty row: where it starts, its values by column name (trimmed), its problems.

    A named tuple rather than a dataclass: one is made per row of a 100,000-row
    list, several times per send, and a tuple is the cheapest immutable record.
    """

    header: CsvHeader
    line: int
    values: dict[str, str]
    problems: tuple[Problem, ...] = ()

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def problem(self, column: str, message: str) -> Problem:
        """A problem placed at this row's value in `column`."""
        return Problem(self.header.path, self.line, self.header.column(column), message)


def encoding_problem(path: Path) -> Problem | None:
    """Where a CSV file stops being UTF-8 (e.g. saved by Excel as "CSV (Comma delimited)")."""
    data = path.read_bytes()
    try:
        data.decode(CSV_ENCODING)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        return Problem(
            path,
            line,
            column,
            "this file is not saved as UTF-8 text; in Excel use Save As > "
            '"CSV UTF-8 (Comma delimited)"',
        )
    return None


def _names(line: str, separator: str) -> tuple[str, ...]:
    cells = next(csv.reader([line], delimiter=separator), [])
    return tuple(cell.strip().lower() for cell in cells)


def _separator(first_line: str, required: Sequence[str]) -> str:
    """The separator under which the header names the most required columns (commas on a tie)."""
    return max(
        SEPARATORS, key=lambda sep: sum(name in _names(first_line, sep) for name in required)
    )


def header_of(path: Path, first_line: str, required: Sequence[str]) -> CsvHeader:
    """The header `csv_rows` reads from `first_line`: its separator and column names."""
    separator = _separator(first_line, required)
    return CsvHeader(path, separator, _names(first_line, separator))


def _header_problems(header: CsvHeader, required: Sequence[str]) -> list[Problem]:
    problems = []
    first_seen: dict[str, int] = {}
    for index, name in enumerate(header.names, start=1):
        if name and name in first_seen:
            problems.append(
                Problem(
                    header.path,
                    1,
                    index,
                    f"the column `{name}` is in the header twice (columns {first_seen[name]} "
                    f"and {index}); remove or rename one",
                )
            )
        first_seen.setdefault(name, index)
    missing = [name for name in required if name not in header.names]
    if missing:
        present = [name for name in header.names if name and name not in required]
        hints = "".join(did_you_mean(name, present) for name in missing)
        read_as = f" (this file is separated by {header.separated_by})"
        problems.append(
            Problem(
                header.path,
                1,
                1,
                f"the header is missing the column(s): {', '.join(missing)}"
                f"{read_as if header.separator != ',' else ''}{hints}; the first line must "
                f"name the columns, e.g. {','.join(required)}",
            )
        )
    return problems


def _row(header: CsvHeader, line: int, cells: list[str]) -> CsvRow:
    width = len(header.names)
    if len(cells) == width and "" not in header.names:  # the usual row: nothing to report
        return CsvRow(header, line, dict(zip(header.names, map(str.strip, cells), strict=True)))
    values: dict[str, str] = {}
    problems: list[Problem] = []
    written = len(cells)
    while written > width and not cells[written - 1].strip():
        written -= 1  # empty cells after the last column: a spreadsheet's stray separators
    if written != width:
        separator = "comma" if header.separator == "," else header.separated_by[:-1]
        why = (
            f"a value with a {separator} in it must be in double quotes"
            if written > width
            else f"leave an empty value between two {header.separated_by} rather than leaving it out"
        )
        problems.append(
            Problem(
                header.path,
                line,
                1,
                f"row {line} has {written} values but the header has {width} columns; {why}",
            )
        )
    for index, (name, cell) in enumerate(zip(header.names, cells, strict=False), start=1):
        value = cell.strip()
        if name:
            values[name] = value
        elif value:
            problems.append(
                Problem(
                    header.path,
                    line,
                    index,
                    f"row {line} has a value in column {index}, which has no name in the header",
                )
            )
    return CsvRow(header, line, values, tuple(problems))


def csv_rows(path: Path, required: Sequence[str], problems: list[Problem]) -> Iterator[CsvRow]:
    """The non-empty rows of the CSV file at `path`, in order.

    Problems with the file itself (encoding, header, a line csv cannot read)
    are added to `problems` and end the rows; a row's own problems are in
    `CsvRow.problems`. `required` are the columns the header must name.
    """
    try:
        with path.open(newline="", encoding=CSV_ENCODING) as handle:
            first_line = handle.readline()
            if not first_line.strip():
                problems.append(
                    Problem(
                        path,
                        1,
                        1,
                        f"the file has no header; its first line must name the columns, "
                        f"e.g. {','.join(required)}",
                    )
                )
                return
            header = header_of(path, first_line, required)
            separator = header.separator
            found = _header_problems(header, required)
            if found:
                problems += found
                return
            reader = csv.reader(handle, delimiter=separator)
            line = 2
            try:
                for cells in reader:
                    start, line = line, reader.line_num + 2
                    if "".join(cells).strip():
                        yield _row(header, start, cells)
            except csv.Error as error:
                problems.append(
                    Problem(path, line, 1, f"this line cannot be read as CSV ({error})")
                )
    except UnicodeDecodeError:
        problem = encoding_problem(path)
        if problem is not None:
            problems.append(problem)
