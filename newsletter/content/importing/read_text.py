"""Read the plain-text form the team exports from Word (like the May 2023 paper's .txt).

Its shape: paragraphs separated by blank lines, table rows as tab-separated
cells, bullets as `- ` (or a typed `•`), nested bullets indented, bold as
`**...**` and links as `[text](url)` with brackets in the text escaped. The
text is already Markdown inline, so it is kept as written. Places are line
numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

from newsletter.content.importing.blocks import Block, Kind, Source
from newsletter.content.importing.inline import sole_link
from newsletter.content.importing.text import cleaned
from newsletter.core.errors import BriefingError

MAX_TEXT_BYTES = 2_000_000  # a briefing is tens of kilobytes
# A typed bullet: a dash, bullet sign or number, then space. `o` is Word's second-level
# bullet when it saves as text, so it counts only when a tab or two spaces follow.
BULLET = re.compile(
    r"^(?P<indent>[ \t]*)(?:[-•*–·▪◦]|\d{1,2}[.)]|o(?=\t| {2}))[ \t]+(?P<text>\S.*)$"
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
    lines = read_text_file(path).split("\n")
    blocks: list[Block] = []
    paragraph: list[str] = []
    start = 0
    indents: list[int] = []  # the indents of the open bullet levels

    def end_paragraph() -> None:
        if paragraph:
            blocks.append(_paragraph("\n".join(paragraph), f"line {start}"))
            paragraph.clear()

    table: list[tuple[str, ...]] = []
    table_start = 0
    for number, line in enumerate(lines, start=1):
        if "\t" in line.strip() and not BULLET.match(line):
            end_paragraph()
            if not table:
                table_start = number
            table.append(tuple(cell.strip() for cell in line.strip().split("\t")))
            continue
        if table:
            blocks.append(Block(Kind.TABLE, f"line {table_start}", rows=tuple(table)))
            table = []
        if not line.strip():
            end_paragraph()
            continue
        bullet = BULLET.match(line)
        if bullet:
            end_paragraph()
            width = _indent_width(bullet["indent"])
            while indents and indents[-1] > width:
                indents.pop()
            if not indents or indents[-1] < width:
                indents.append(width)
            level = len(indents) - 1
            blocks.append(Block(Kind.BULLET, f"line {number}", bullet["text"].strip(), level))
            continue
        indents = []
        if not paragraph:
            start = number
        paragraph.append(line.strip())
    end_paragraph()
    if table:
        blocks.append(Block(Kind.TABLE, f"line {table_start}", rows=tuple(table)))
    return Source(tuple(blocks))


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
