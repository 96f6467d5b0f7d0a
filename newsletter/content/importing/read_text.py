"""Read the plain-text form the team exports from Word (like the May 2023 paper's .txt).

Its shape: paragraphs separated by blank lines, table rows as tab-separated
cells, bullets as `- ` (or a typed `•`), nested bullets indented, bold as
`**...**` and links as `[text](url)` with brackets in the text escaped. The
text is already Markdown inline, so it is kept as written. Places are line
numbers.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from newsletter.content.importing.blocks import Block, Kind, Source
from newsletter.content.importing.inline import sole_link
from newsletter.content.importing.text import cleaned
from newsletter.core.errors import BriefingError

MAX_TEXT_BYTES = 2_000_000  # a briefing is tens of kilobytes
# A typed bullet: a dash, bullet sign or number, then space. `o` is Word's second-level
# bullet when it saves as text, so it counts only when a tab or two spaces follow.
BULLET = re.compile(
    r"^(?P<indent>[ \t]*)(?:[-•*–·▪◦\uf0b7\uf0a7]|\d{1,2}[.)]|o(?=\t| {2}))[ \t]+(?P<text>\S.*)$"
)
# Word writes an embedded document as its icon's caption: "Microsoft Word" / "Document".
EMBEDDED = re.compile(r"^(Microsoft \w+|Adobe Acrobat)\n(Document|Worksheet|Presentation)$")


def read_text_file(path: Path) -> str:
    """The file's text, refusing what is not text (a binary file named .txt or .md)."""
    with path.open("rb") as handle:
        data = handle.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise BriefingError(f"{path}: is larger than a briefing can be ({MAX_TEXT_BYTES:,} bytes)")
    if b"\x00" in data or data.startswith(b"PK\x03\x04"):
        raise BriefingError(
            f"{path}: is not a text file (a Word document? save it as .docx and import that)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # Notepad's "ANSI" on Windows
    return cleaned(text.replace("\r\n", "\n").replace("\r", "\n"))


def _indent_width(indent: str) -> int:
    return len(indent.expandtabs(4))


def read_plain_text(path: Path) -> Source:
    reader = _Lines()
    for number, line in enumerate(read_text_file(path).split("\n"), start=1):
        reader.line(number, line)
    reader.end_paragraph()
    reader.end_table()
    return Source(tuple(reader.blocks))


class _Lines:
    """Groups lines into blocks: tables (tab-separated rows), bullets, paragraphs."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.paragraph: list[str] = []
        self.paragraph_start = 0
        self.table: list[tuple[str, ...]] = []
        self.table_start = 0
        self.indents: list[int] = []  # the indents of the open bullet levels
        self.after_bullet = False  # the previous line was a bullet (or its continuation)

    def line(self, number: int, line: str) -> None:
        bullet = BULLET.match(line)
        if "\t" in line.strip() and not bullet:
            self.end_paragraph()
            self.table_start = self.table_start if self.table else number
            self.table.append(tuple(cell.strip() for cell in line.strip().split("\t")))
            return
        self.end_table()
        if not line.strip():
            self.end_paragraph()
            self.after_bullet = False
        elif bullet:
            self.end_paragraph()
            self.bullet(number, bullet)
        elif self.after_bullet and line[:1].isspace():  # a long bullet wrapped onto the next line
            last = self.blocks[-1]
            self.blocks[-1] = replace(last, text=f"{last.text}\n{line.strip()}")
        else:
            self.indents = []
            self.after_bullet = False
            self.paragraph_start = self.paragraph_start if self.paragraph else number
            self.paragraph.append(line.strip())

    def bullet(self, number: int, bullet: re.Match[str]) -> None:
        width = _indent_width(bullet["indent"])
        while self.indents and self.indents[-1] > width:
            self.indents.pop()
        if not self.indents or self.indents[-1] < width:
            self.indents.append(width)
        level = len(self.indents) - 1
        self.blocks.append(Block(Kind.BULLET, f"line {number}", bullet["text"].strip(), level))
        self.after_bullet = True

    def end_paragraph(self) -> None:
        if self.paragraph:
            self.blocks.append(
                _paragraph("\n".join(self.paragraph), f"line {self.paragraph_start}")
            )
            self.paragraph = []

    def end_table(self) -> None:
        if self.table:
            self.blocks.append(
                Block(Kind.TABLE, f"line {self.table_start}", rows=tuple(self.table))
            )
            self.table = []


def _paragraph(text: str, where: str) -> Block:
    embedded = EMBEDDED.match(text)
    if embedded:
        return Block(
            Kind.OTHER,
            where,
            f"{embedded[1]} {embedded[2].lower()} (embedded in the paper)",
            what=f"an embedded {embedded[1]} {embedded[2].lower()}",
        )
    link = sole_link(text)
    if link is not None:
        return Block(Kind.LINK, where, link.text, url=link.url)
    return Block(Kind.PARAGRAPH, where, text)
