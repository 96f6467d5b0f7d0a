"""Recognise the publications table (type, title, date) and read its rows.

A table is the publications table when its header names the three columns,
in any order ("Type | Title document | Date"), or, headerless, when its first
column holds the catalogue's publication types. Rows that cannot be read (a
date that is not a month, a type the catalogue does not know) are returned
as warnings naming their place, never dropped in silence.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from newsletter.content.catalogue import PUBLICATION_TYPES
from newsletter.content.importing.blocks import Block, BriefingWarning
from newsletter.content.importing.briefing import TableRow
from newsletter.content.importing.text import comparable, one_line
from newsletter.content.markup import markdown_plain

PLUS_NOTE = re.compile(r"\s*\(\s*plus (?:a )?separate ([^)]*)\)\s*$", re.IGNORECASE)
MONTH_FORMATS = ("%B %Y", "%b %Y", "%m/%Y", "%Y-%m")
DAY_FORMATS = ("%d %B %Y", "%d %b %Y", "%A %d %B %Y", "%d/%m/%Y", "%Y-%m-%d", "%B %d, %Y")
ORDINAL = re.compile(r"(?<=\d)(st|nd|rd|th)\b")


def parse_when(text: str) -> tuple[date, bool] | None:
    """A date written as people write them, and whether it names a day (else a month)."""
    words = ORDINAL.sub("", one_line(markdown_plain(text)).strip(" .,"))
    for formats, has_day in ((DAY_FORMATS, True), (MONTH_FORMATS, False)):
        for pattern in formats:
            try:
                return datetime.strptime(words, pattern).date(), has_day
            except ValueError:
                continue
    return None


def _columns(row: tuple[str, ...]) -> tuple[int, int, int] | None:
    """The (type, title, date) column numbers if this row is the table's header."""
    names = [comparable(cell) for cell in row]

    def find(word: str) -> int | None:
        return next((i for i, name in enumerate(names) if word in name.split()), None)

    when = find("date")
    found = (find("type"), find("title"), when if when is not None else find("published"))
    if None in found or len(set(found)) != 3:
        return None
    return found  # type: ignore[return-value]


def _known_type(text: str) -> str | None:
    wanted = comparable(text)
    return next((t for t in PUBLICATION_TYPES if comparable(t) == wanted), None)


def is_publications_table(block: Block) -> bool:
    if not block.rows:
        return False
    if _columns(block.rows[0]) is not None:
        return True
    return all(len(row) == 3 and _known_type(row[0]) for row in block.rows)


def read_publication_rows(block: Block) -> tuple[list[TableRow], list[BriefingWarning]]:
    """The rows of a publications table (header rows skipped, wherever they repeat)."""
    columns = (0, 1, 2)
    rows: list[TableRow] = []
    warnings: list[BriefingWarning] = []
    for number, row in enumerate(block.rows, start=1):
        where = f"{block.where}, row {number}"
        header = _columns(row)
        if header is not None:
            columns = header
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(columns):
            warnings.append(BriefingWarning(where, f"this table row has too few cells: {row}"))
            continue
        kind, title, when = (one_line(markdown_plain(row[i])) for i in columns)
        read = _row((kind, title, when), where)
        if isinstance(read, BriefingWarning):
            warnings.append(read)
        else:
            rows.append(read)
    return rows, warnings


def _row(cells: tuple[str, str, str], where: str) -> TableRow | BriefingWarning:
    kind, title, when = cells
    known = _known_type(kind)
    if known is None:
        return BriefingWarning(
            where,
            f"“{title}” has the type “{kind}”, which is not a catalogue type "
            f"({', '.join(PUBLICATION_TYPES)}); add it to the catalogue by hand",
        )
    month = parse_when(when)
    if month is None:
        return BriefingWarning(
            where,
            f"“{title}” has the date “{when}”, which is not a month like “April 2019”; "
            "add it to the catalogue by hand",
        )
    note = PLUS_NOTE.search(title)
    return TableRow(
        type=known,
        title=PLUS_NOTE.sub("", title),
        published=month[0].strftime("%Y-%m"),
        where=where,
        attachment=note[1].strip() if note else None,
    )
