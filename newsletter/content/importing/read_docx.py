"""Read a Word briefing (.docx) with python-docx, as people really write them.

Lists are recognised however they were made: a "List Bullet 2" style, a
"List Paragraph" with Word numbering (its level is the numbering's `ilvl`),
or a bullet typed by hand (`•`, `-`, `–`; each leading tab one level deeper).
Headings are "Title" and "Heading N" styles, any paragraph or style with
Word's outline level (custom heading styles), or paragraphs written wholly in
bold (marked `emphasised`; the recogniser decides). Runs become Markdown:
bold `**`, italic `*`, hyperlinks `[text](url)`, the rest escaped. Images,
embedded documents, text boxes and comments become OTHER blocks where they
stood. Places are "paragraph N" (paragraphs with something in them, counted
from the top, table cells excluded) and "table N".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docx
from docx.document import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.opc.exceptions import PackageNotFoundError
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph
from docx.text.run import Run

from newsletter.content.importing.blocks import Block, Kind, Source
from newsletter.content.importing.docx_package import check_docx_package
from newsletter.content.importing.text import cleaned, escape_markdown, one_line
from newsletter.core.errors import BriefingError

# A bullet typed by hand: a sign (, , pasted from PDFs, are Symbol and Wingdings
# bullets), Word's "o" or a number, each followed by space or a tab.
TYPED_BULLET = re.compile(
    r"^(?P<tabs>\t*)\s*(?:[•·▪◦\uf0b7\uf0a7]\s*|[-–]\s+|(?:o|\d{1,2}[.)])\t\s*)"
)
LIST_STYLE = re.compile(r"^list (?:bullet|number|continue)(?: (?P<level>\d))?$")
HEADING_STYLE = re.compile(r"^heading (?P<level>\d)$")


class _StyleNames:
    """Style names by id, read once: python-docx looks a style up afresh on every use, slowly."""

    def __init__(self, document: Document) -> None:
        self._names = {style.style_id: (style.name or "").casefold() for style in document.styles}
        # Custom heading styles ("Report heading") carry Word's outline level, 0 for level 1.
        self._outline = {
            style.style_id: int(found[0]) + 1
            for style in document.styles
            if (found := style.element.xpath("./w:pPr/w:outlineLvl/@w:val"))
            and str(found[0]).isdigit()
            and int(found[0]) < 9  # 9 is Word's "body text"
        }
        default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
        self._default_paragraph = (default.name or "").casefold() if default is not None else ""

    def of_paragraph(self, paragraph: Paragraph) -> str:
        style_id = paragraph._p.style
        return self._names.get(style_id, "") if style_id else self._default_paragraph

    def outline_level(self, paragraph: Paragraph) -> int | None:
        """The heading level Word's outline gives the paragraph (or its style), if any."""
        found = paragraph._p.xpath("./w:pPr/w:outlineLvl/@w:val")
        if found and str(found[0]).isdigit():
            return int(found[0]) + 1 if int(found[0]) < 9 else None
        style_id = paragraph._p.style
        return self._outline.get(style_id) if style_id else None

    def of_run(self, run: Run) -> str:
        style_id = run._r.style
        return self._names.get(style_id, "") if style_id else ""


@dataclass(frozen=True)
class _Piece:
    text: str
    bold: bool = False
    italic: bool = False
    url: str | None = None  # inside a hyperlink to this address


def read_docx(path: Path) -> Source:
    check_docx_package(path)
    try:
        document = docx.Document(str(path))
    except (
        PackageNotFoundError,
        KeyError,
        ValueError,
        SyntaxError,
    ) as error:  # lxml's XMLSyntaxError is a SyntaxError
        raise BriefingError(f"{path}: cannot be read as a Word document ({error})") from None
    blocks: list[Block] = []
    styles = _StyleNames(document)
    paragraphs = tables = 0
    for item in _body_items(document):
        if isinstance(item, Table):
            tables += 1
            blocks.append(_table(item, f"table {tables}"))
            continue
        read = _paragraph_blocks(document, styles, item, f"paragraph {paragraphs + 1}")
        if read:
            paragraphs += 1
            blocks += read
    return Source(tuple(blocks))


def _body_items(document: Document) -> Iterator[Paragraph | Table]:
    """Paragraphs and tables in order, including those inside content controls."""

    def walk(element: Any) -> Iterator[Paragraph | Table]:
        for child in element.iterchildren():
            if child.tag == qn("w:p"):
                yield Paragraph(child, document)
            elif child.tag == qn("w:tbl"):
                yield Table(child, document)
            elif child.tag in (qn("w:sdt"), qn("w:sdtContent")):
                yield from walk(child)

    yield from walk(document.element.body)


def _table(table: Table, where: str) -> Block:
    rows = tuple(
        tuple(escape_markdown(one_line(cell.text)) for cell in row.cells) for row in table.rows
    )
    return Block(Kind.TABLE, where, rows=rows)


def _pieces(paragraph: Paragraph, styles: _StyleNames) -> list[_Piece]:
    """The paragraph's runs in reading order, each with the address of the link it is in.

    python-docx reads only runs and hyperlinks directly in the paragraph; Word
    also puts text in tracked insertions, smart tags, content controls and
    fields (old documents make links with a HYPERLINK field), so walk those too.
    Deleted text (tracked changes) is left out, as Word shows the text now.
    """
    pieces: list[_Piece] = []
    field = _Field()

    def walk(element: Any, url: str | None) -> None:
        for child in element.iterchildren():
            if child.tag == qn("w:r"):
                field.step(child)
                pieces.append(_run_piece(Run(child, paragraph), url or field.url, styles))
            elif child.tag == qn("w:hyperlink"):
                link = Hyperlink(child, paragraph)
                address = link.address + (f"#{link.fragment}" if link.fragment else "")
                walk(child, address or None)
            elif child.tag == qn("w:fldSimple"):
                walk(child, _field_link(child.get(qn("w:instr")) or "") or url)
            elif child.tag in _READ_THROUGH:
                walk(child, url)

    walk(paragraph._p, None)
    return [p for p in pieces if p.text]


_READ_THROUGH = frozenset(
    qn(tag)
    for tag in ("w:ins", "w:moveTo", "w:smartTag", "w:customXml", "w:sdt", "w:sdtContent", "w:dir")
)
FIELD_LINK = re.compile(r'^\s*HYPERLINK\s+"([^"]+)"(?:\s+\\l\s+"([^"]+)")?')


def _field_link(instruction: str) -> str | None:
    found = FIELD_LINK.match(instruction)
    if found is None:
        return None
    return found[1] + (f"#{found[2]}" if found[2] else "")


class _Field:
    """Where the runs are in a Word field (begin, instruction, separate, result, end)."""

    def __init__(self) -> None:
        self.instruction = ""
        self.url: str | None = None  # while in the result of a HYPERLINK field

    def step(self, run: Any) -> None:
        for part in run.iterchildren():
            if part.tag == qn("w:fldChar"):
                kind = part.get(qn("w:fldCharType"))
                if kind == "begin":
                    self.instruction, self.url = "", None
                elif kind == "separate":
                    self.url = _field_link(self.instruction)
                elif kind == "end":
                    self.instruction, self.url = "", None
            elif part.tag == qn("w:instrText"):
                self.instruction += part.text or ""


def _run_piece(run: Run, url: str | None, styles: _StyleNames) -> _Piece:
    style = styles.of_run(run)
    bold = bool(run.bold) or style in {"strong", "bold"}
    italic = bool(run.italic) or style in {"emphasis", "italic"}
    return _Piece(cleaned(run.text), bold, italic, url)


def _markdown(pieces: list[_Piece]) -> str:
    """The pieces as Markdown inline text: neighbours with the same link share one `[...]()`."""
    out: list[str] = []
    index = 0
    while index < len(pieces):
        url = pieces[index].url
        end = index
        while end < len(pieces) and pieces[end].url == url:
            end += 1
        words = "".join(_styled(p) for p in pieces[index:end])
        if url:
            target = f"<{url}>" if any(ch in url for ch in " ()<>") else url
            out.append(f"[{words}]({target})")
        else:
            out.append(words)
        index = end
    return "".join(out).strip()


def _styled(piece: _Piece) -> str:
    core = piece.text.strip()
    if not core:
        return piece.text
    marker = ("**" if piece.bold else "") + ("*" if piece.italic else "")
    lead = piece.text[: len(piece.text) - len(piece.text.lstrip())]
    trail = piece.text[len(piece.text.rstrip()) :]
    return f"{lead}{marker}{escape_markdown(core)}{marker[::-1]}{trail}"


def _list_level(paragraph: Paragraph, style: str) -> int | None:
    """The nesting depth when the paragraph is a Word list item, else None."""
    named = LIST_STYLE.match(style)
    if named:
        return int(named["level"] or 1) - 1
    numbered = paragraph._p.xpath("./w:pPr/w:numPr/w:numId/@w:val")
    if numbered and numbered[0] != "0":  # numId 0 is Word's "numbering removed"
        level = paragraph._p.xpath("./w:pPr/w:numPr/w:ilvl/@w:val")
        return int(level[0]) if level and str(level[0]).isdigit() else 0
    return None


def _strip_typed_bullet(pieces: list[_Piece]) -> tuple[list[_Piece], int] | None:
    """The pieces without a typed bullet sign and the depth its tabs give, or None."""
    if not pieces or pieces[0].url:
        return None
    mark = TYPED_BULLET.match(pieces[0].text)
    rest = pieces[0].text[mark.end() :] if mark else ""
    if mark is None or (not rest.strip() and len(pieces) == 1):
        return None
    first = _Piece(rest, pieces[0].bold, pieces[0].italic)
    return [first, *pieces[1:]], len(mark["tabs"])


def _paragraph_blocks(
    document: Document, styles: _StyleNames, paragraph: Paragraph, where: str
) -> list[Block]:
    pieces = _pieces(paragraph, styles)
    blocks: list[Block] = []
    text = _markdown(pieces)
    if text:
        outline = styles.outline_level(paragraph)
        if outline is not None and styles.of_paragraph(paragraph) != "title":
            blocks.append(Block(Kind.HEADING, where, one_line(text), outline))
        else:
            style = styles.of_paragraph(paragraph)
            blocks.append(_text_block(paragraph, style, pieces, text, where))
    blocks += _unread_text(paragraph, pieces, where)
    blocks += _objects(document, paragraph, where)
    return blocks


def _unread_text(paragraph: Paragraph, pieces: list[_Piece], where: str) -> list[Block]:
    """The paragraph's whole text as an OTHER block, if Word kept some where the walk missed it."""
    shown = paragraph._p.xpath(
        ".//w:t[not(ancestor::w:txbxContent) and not(ancestor::w:del) and not(ancestor::w:moveFrom)]"
    )
    everything = one_line("".join(t.text or "" for t in shown))
    read = one_line("".join(p.text for p in pieces))
    if len(everything.replace(" ", "")) <= len(read.replace(" ", "")):
        return []
    return [
        Block(
            Kind.OTHER,
            where,
            escape_markdown(everything),
            what="text in a form the import cannot read",
        )
    ]


def _text_block(
    paragraph: Paragraph, style: str, pieces: list[_Piece], text: str, where: str
) -> Block:
    if style == "title":
        return Block(Kind.HEADING, where, one_line(text), 0)
    heading = HEADING_STYLE.match(style)
    if heading:
        return Block(Kind.HEADING, where, one_line(text), int(heading["level"]))
    level = _list_level(paragraph, style)
    if level is not None:
        return Block(Kind.BULLET, where, text, level)
    typed = _strip_typed_bullet(pieces)
    if typed is not None:
        return Block(Kind.BULLET, where, _markdown(typed[0]), typed[1])
    links = {p.url for p in pieces if p.text.strip()}
    if len(links) == 1 and None not in links:
        words = one_line("".join(p.text for p in pieces))
        return Block(Kind.LINK, where, words, url=links.pop())
    emphasised = all(p.bold and not p.url for p in pieces if p.text.strip())
    return Block(Kind.PARAGRAPH, where, text, emphasised=emphasised)


def _objects(document: Document, paragraph: Paragraph, where: str) -> list[Block]:
    """Images, embedded documents, text boxes and comments in the paragraph, as OTHER blocks."""
    element = paragraph._p
    blocks: list[Block] = []
    for described in element.xpath(".//w:drawing[not(.//w:txbxContent)]//wp:docPr"):
        words = escape_markdown(one_line(described.get("descr") or described.get("title") or ""))
        text = f"Image: {words or 'no description'}"
        blocks.append(Block(Kind.OTHER, where, text, what="an image"))
    if element.xpath(".//w:object | .//w:pict[not(.//w:txbxContent)]"):
        blocks.append(
            Block(Kind.OTHER, where, "Embedded document", what="an embedded document or picture")
        )
    for box in element.xpath(".//w:txbxContent"):
        words = one_line(" ".join(box.xpath(".//w:t/text()")))
        if words:
            blocks.append(Block(Kind.OTHER, where, escape_markdown(words), what="a text box"))
    for comment_id in dict.fromkeys(element.xpath(".//w:commentRangeStart/@w:id")):
        comment = document.comments.get(int(comment_id))
        if comment is not None:
            who = f" by {comment.author}" if comment.author else ""
            words = escape_markdown(one_line(comment.text))
            blocks.append(Block(Kind.OTHER, where, f"Comment{who}: {words}", what="a comment"))
    return blocks
