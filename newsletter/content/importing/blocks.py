"""The neutral block model every reader produces and the recogniser reads.

A briefing arrives as Word, Markdown or the team's plain-text export; each
reader turns its format into the same flat list of blocks, in source order,
each carrying its place in the source ("paragraph 12", "line 40") so any
warning can send a person to the right spot. Only the readers know formats;
only the recogniser knows what a briefing looks like.

Text in blocks is Markdown inline (bold, italics, links), already escaped, so
it can go into an issue as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    HEADING = "heading"  # styled as a heading (level 0: the document title)
    PARAGRAPH = "paragraph"
    BULLET = "bullet"  # a list item; `level` is its nesting depth, 0 at the margin
    LINK = "link"  # a paragraph that is one link and nothing else
    TABLE = "table"  # `rows` of plain-text cells
    OTHER = "other"  # something the readers cannot express as text: `text` describes it


@dataclass(frozen=True)
class Block:
    """One paragraph-sized piece of the source."""

    kind: Kind
    where: str
    text: str = ""
    level: int = 0
    url: str | None = None  # LINK: the target; None when the paper gives none ("#")
    rows: tuple[tuple[str, ...], ...] = ()
    emphasised: bool = False  # PARAGRAPH written wholly in bold: a heading typed by hand
    what: str = ""  # OTHER: what it is, for the warning ("an image", "a comment")


@dataclass(frozen=True)
class BriefingWarning:
    """Something a person must check, with its place in the source."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Source:
    """What a reader made of a file: its blocks, and anything it already had to warn about."""

    blocks: tuple[Block, ...]
    warnings: tuple[BriefingWarning, ...] = ()
