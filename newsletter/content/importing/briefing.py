"""What the recogniser finds in a briefing paper: a format-free draft of the issue.

Every piece keeps `where` it stood in the source, so the later steps (the
catalogue, the issue writer) can still point a person at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from newsletter.content.importing.blocks import BriefingWarning


@dataclass(frozen=True)
class DraftPoint:
    text: str  # Markdown inline
    where: str
    points: tuple[DraftPoint, ...] = ()


@dataclass(frozen=True)
class DraftLink:
    text: str  # plain text
    url: str | None
    heading: str | None
    where: str


@dataclass(frozen=True)
class DraftSection:
    title: str
    where: str
    lead_in: str = ""
    lead_in_where: str = ""
    points: tuple[DraftPoint, ...] = ()
    prompts_heading: str = ""
    prompts: tuple[DraftPoint, ...] = ()  # never nested
    links: tuple[DraftLink, ...] = ()


@dataclass(frozen=True)
class TableRow:
    """A row of the publications table, as the paper writes it."""

    type: str
    title: str  # without a "(Plus separate ...)" note
    published: str  # YYYY-MM
    where: str
    attachment: str | None = None  # what the "(Plus separate ...)" note names


@dataclass(frozen=True)
class Briefing:
    title: str
    issue_date: date | None
    intro: tuple[DraftPoint, ...]  # Markdown blocks (paragraphs, list items), in order
    rows: tuple[TableRow, ...]
    sections: tuple[DraftSection, ...]
    warnings: tuple[BriefingWarning, ...] = field(default=())
