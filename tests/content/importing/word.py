"""Build real Word documents with python-docx for the import tests.

python-docx has no call for a hyperlink or for Word's own list numbering on
a "List Paragraph", so those are written into the XML here the way Word
writes them (a relationship to the address plus `w:hyperlink`; `w:numPr`
with `w:ilvl`). Markdown inline text (`**bold**`, `*italic*`, links) is
turned into runs through markdown-it, so a paragraph built here holds
exactly the words and styles the paper has.
"""

from __future__ import annotations

import calendar
from pathlib import Path

from docx import Document
from docx.document import Document as DocumentObject
from docx.enum.style import WD_STYLE_TYPE
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Inches
from docx.text.paragraph import Paragraph
from markdown_it import MarkdownIt

from tests.content.test_seed_fidelity import paper_sections, paper_table

MARKDOWN = MarkdownIt("commonmark")
# A 1x1 PNG, for an image in the document.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5e2d5de0000000049454e44ae426082"
)


def add_hyperlink(paragraph: Paragraph, text: str, url: str, *, bold: bool = False) -> None:
    """A real Word hyperlink: an external relationship, and runs inside `w:hyperlink`."""
    rel_id = paragraph.part.relate_to(url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), rel_id)
    run = OxmlElement("w:r")
    if bold:
        properties = OxmlElement("w:rPr")
        properties.append(OxmlElement("w:b"))
        run.append(properties)
    words = OxmlElement("w:t")
    words.text = text
    words.set(qn("xml:space"), "preserve")
    run.append(words)
    link.append(run)
    paragraph._p.append(link)


def add_markdown(paragraph: Paragraph, text: str) -> Paragraph:
    """Runs for Markdown inline text: bold, italic and links as Word formats them."""
    children = MARKDOWN.parseInline(text)[0].children or []
    bold = italic = False
    url: str | None = None
    for token in children:
        if token.type in {"strong_open", "strong_close"}:
            bold = token.type == "strong_open"
        elif token.type in {"em_open", "em_close"}:
            italic = token.type == "em_open"
        elif token.type == "link_open":
            url = str(token.attrGet("href"))
        elif token.type == "link_close":
            url = None
        elif token.type in {"text", "softbreak"}:
            words = token.content if token.type == "text" else " "
            if url:
                add_hyperlink(paragraph, words, url, bold=bold)
            else:
                run = paragraph.add_run(words)
                run.bold = bold or None
                run.italic = italic or None
    return paragraph


def number_paragraph(paragraph: Paragraph, level: int, num_id: int = 1) -> Paragraph:
    """Word's own numbering on a paragraph: `w:numPr` with the list level (`ilvl`)."""
    numbering = OxmlElement("w:numPr")
    ilvl = OxmlElement("w:ilvl")
    ilvl.set(qn("w:val"), str(level))
    num = OxmlElement("w:numId")
    num.set(qn("w:val"), str(num_id))
    numbering.append(ilvl)
    numbering.append(num)
    paragraph._p.get_or_add_pPr().append(numbering)
    return paragraph


def add_image(document: DocumentObject, path: Path, description: str) -> None:
    path.write_bytes(PIXEL)
    document.add_picture(str(path), width=Inches(0.2))
    last = document.paragraphs[-1]
    for properties in last._p.xpath(".//wp:docPr"):
        properties.set("descr", description)


def may_2023_docx(path: Path) -> Path:
    """The May 2023 paper as Word: Title and Heading styles, List Bullet styles, a real table,
    real hyperlinks, the embedded briefing as a picture, built from the .txt paper."""
    document = Document()
    document.add_paragraph("Reports from the Child Safeguarding Practice Review Panel", "Title")
    document.add_paragraph("May 2023")
    document.add_paragraph("Child Safeguarding Practice Review Panel publications", "Heading 2")
    table = document.add_table(rows=1, cols=3)
    for cell, name in zip(table.rows[0].cells, ("Type", "Title document", "Date")):
        cell.text = name
    for row in paper_table():
        cells = table.add_row().cells
        title = row["title"] + (f" (Plus separate {row['note']})" if row["note"] else "")
        cells[0].text, cells[1].text = row["type"], title
        cells[2].text = _month_label(row["published"])
    for section in paper_sections():
        document.add_paragraph(section["title"], "Heading 1")
        document.add_paragraph(section["lead_in"])
        for text, children in section["points"]:
            add_markdown(document.add_paragraph(style="List Bullet"), text)
            for child in children:
                add_markdown(document.add_paragraph(style="List Bullet 2"), child)
        document.add_paragraph(section["prompts_heading"])
        for text, _ in section["prompts"]:
            add_markdown(document.add_paragraph(style="List Bullet"), text)
        heading = None
        for link in section["links"]:
            if link["heading"] != heading:
                heading = link["heading"]
                document.add_paragraph(heading)
            if link["text"].endswith("(Microsoft Word document)"):
                add_image(document, path.with_suffix(".png"), link["text"])
            elif link["url"]:
                add_hyperlink(document.add_paragraph(), link["text"], link["url"])
            else:
                document.add_paragraph(link["text"])
    document.save(str(path))
    return path


def _month_label(month: str) -> str:
    year, number = month.split("-")
    return f"{calendar.month_name[int(number)]} {year}"


def messy_docx(path: Path) -> dict[str, int]:
    """A briefing written the way people really use Word, saved at `path`.

    Returns the paragraph number of the places a warning must name. The title
    and section headings are only bold; lists are "List Paragraph" plus Word
    numbering three levels deep, bullets typed by hand, and one "List Bullet";
    a line break inside the intro; a non-breaking space in the prompts
    heading; a comment, an image and a table that is not the publications one.
    """
    document = Document()
    places: dict[str, int] = {}
    number = 0

    def paragraph(text: str = "", style: str | None = None, *, bold: bool = False) -> Paragraph:
        nonlocal number
        number += 1
        made = document.add_paragraph(style=style)
        if text:
            made.add_run(text).bold = bold or None
        return made

    paragraph("Partnership Briefing", bold=True)
    paragraph("June 2024")
    intro = paragraph("A short round-up for practitioners.")
    intro.runs[0].add_break()
    intro.add_run("Please share it with your teams.")
    paragraph("Domestic abuse and young people", bold=True)
    lead_in = paragraph("Key messages from the review were:")
    places["comment"] = number
    document.add_comment(lead_in.runs, text="Check this wording with Jo", author="Sam Patel")
    number_paragraph(
        paragraph("Young people can be victims in their own relationships", "List Paragraph"), 0
    )
    number_paragraph(paragraph("Including control through their phones", "List Paragraph"), 1)
    number_paragraph(paragraph("such as sharing their location", "List Paragraph"), 2)
    paragraph("•\tSchools often see the first signs")
    typed = paragraph("-\tUse the ")
    add_hyperlink(typed, "relationships toolkit", "https://www.example.org/relationships-toolkit")
    typed.add_run(" in every school")
    paragraph("\uf0b7\tGuidance pasted from a PDF keeps its Symbol-font bullet")
    paragraph("For\u00a0information and consideration", bold=True)
    number_paragraph(
        paragraph("How do we ask young people about relationships?", "List Paragraph"), 0
    )
    paragraph("Link to document")
    add_hyperlink(paragraph(), "Domestic abuse toolkit", "https://www.example.org/da-toolkit")
    number += 1
    places["image"] = number
    add_image(document, path.with_suffix(".png"), "Chart of referrals by age")
    table = document.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "When", "What"
    table.rows[1].cells[0].text, table.rows[1].cells[1].text = "3 July", "Briefing session"
    report_heading = document.styles.add_style("Report Heading", WD_STYLE_TYPE.PARAGRAPH)
    outline = OxmlElement("w:outlineLvl")
    outline.set(qn("w:val"), "0")
    report_heading.element.get_or_add_pPr().append(outline)
    paragraph("Neglect", "Report Heading")
    paragraph("What we found:")
    paragraph("Neglect often went unseen for months", "List Bullet")
    document.save(str(path))
    return places
