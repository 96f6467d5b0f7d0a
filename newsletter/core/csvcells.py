"""Cells for the CSV files we write, made safe to open in a spreadsheet.

Excel, LibreOffice and Google Sheets run a cell that starts with `=`, `+`,
`-` or `@` (or a tab or carriage return before one) as a formula, so an
address or a bounce reason such as `=HYPERLINK(...)` would become a live
link or worse on the comms officer's machine. Following OWASP's CSV
injection guidance, such a cell is written with a leading single quote,
which spreadsheets read as "this is text".

Every CSV writer passes its cells through `write_cell` (or `write_row`).
Files we read back (suppressed.csv) pass their cells through `read_cell`,
which strips exactly the quote `write_cell` added and nothing else, so every
value round-trips unchanged. Text that already starts with a quote is quoted
once more for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

# The first characters OWASP lists as starting a formula (or hiding one behind whitespace).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"
_ESCAPED_STARTS = (*FORMULA_STARTS, TEXT_MARK)

Cell = TypeVar("Cell")


def write_cell(value: Cell) -> Cell | str:
    """`value` as written to a CSV cell: text a spreadsheet would run gets a leading quote."""
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        return TEXT_MARK + value
    return value


def read_cell(value: str) -> str:
    """The value `write_cell` was given: its added quote removed, anything else left alone."""
    if value.startswith(TEXT_MARK) and value[1:].startswith(_ESCAPED_STARTS):
        return value[1:]
    return value


def write_row(cells: Iterable[Cell]) -> list[Cell | str]:
    """A row for `csv.writer`, every cell through `write_cell`."""
    return [write_cell(cell) for cell in cells]


def write_record(row: Mapping[str, str]) -> dict[str, str]:
    """A row for `csv.DictWriter`, every cell through `write_cell`."""
    return {name: write_cell(value) for name, value in row.items()}


def read_record(row: Mapping[str | None, str | None]) -> dict[str, str]:
    """A `csv.DictReader` row of a file we wrote, every cell through `read_cell`.

    Cells beyond the header (DictReader's `None` key) are dropped; missing
    cells become empty text.
    """
    return {name: read_cell(value or "") for name, value in row.items() if name is not None}
