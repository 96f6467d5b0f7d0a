"""Recognise a briefing's structure in the neutral blocks: the format-free `Briefing`.

The shape, from the team's papers: a title and a date line; a publications
table; then one section per report, each a heading, a lead-in line ending in
a colon, bullets (nested), a "For information and consideration" heading with
prompts, and "Link to document" headings each followed by a link.

Section headings are the document's headings (Heading styles, `#`, or lines
wholly in bold) when it has any; a plain-text paper has none, so there a
short line without closing punctuation that is followed by more text is
taken as a heading. Whatever fits nowhere stays where it stood (in the intro
before the first section, as a bullet of its section after) with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

from newsletter.content.importing.blocks import Block, BriefingWarning, Kind
from newsletter.content.importing.briefing import (
    Briefing,
    DraftLink,
    DraftPoint,
    DraftSection,
    TableRow,
)
from newsletter.content.importing.inline import sole_link
from newsletter.content.importing.tables import (
    is_publications_table,
    parse_when,
    read_publication_rows,
)
from newsletter.content.importing.text import comparable, escape_markdown, one_line
from newsletter.content.markup import markdown_plain
from newsletter.core.errors import BriefingError

PROMPT_LABELS = ("for information", "for discussion", "for consideration", "for reflection")
LINK_LABELS = ("link to", "links to", "associated ", "further reading", "read more")
HEADING_WORDS = 15  # a heading is short; a longer line is a sentence
TEXT_KINDS = (Kind.HEADING, Kind.PARAGRAPH)
DEEPEST = 5  # the deepest bullet level kept (0 at the margin): an email reads badly deeper


def plain(text: str) -> str:
    return one_line(markdown_plain(text))


def is_prompts_label(text: str) -> bool:
    return comparable(text).startswith(PROMPT_LABELS)


def _is_link_label(blocks: tuple[Block, ...], index: int) -> bool:
    block = blocks[index]
    if comparable(block.text).startswith(LINK_LABELS):
        return True
    following = blocks[index + 1] if index + 1 < len(blocks) else None
    short = len(plain(block.text).split()) <= 8 and not plain(block.text).endswith(":")
    return short and following is not None and following.kind in (Kind.LINK, Kind.OTHER)


def _is_label(blocks: tuple[Block, ...], index: int) -> bool:
    return is_prompts_label(blocks[index].text) or _is_link_label(blocks, index)


def _short_line(block: Block) -> bool:
    words = plain(block.text)
    return (
        "\n" not in block.text.strip()
        and 0 < len(words.split()) <= HEADING_WORDS
        and not words.endswith((".", ":", ";", ",", "!", "?"))
    )


def is_caption(blocks: tuple[Block, ...], index: int) -> bool:
    """Whether the block names the publications table that follows it."""
    block = blocks[index]
    following = blocks[index + 1] if index + 1 < len(blocks) else None
    return (
        (block.kind is Kind.HEADING or (block.kind is Kind.PARAGRAPH and _short_line(block)))
        and following is not None
        and following.kind is Kind.TABLE
        and is_publications_table(following)
    )


def section_starts(blocks: tuple[Block, ...], first: int) -> set[int]:
    """The indexes of the blocks that open a section."""
    explicit = {
        i
        for i in range(first, len(blocks))
        if (blocks[i].kind is Kind.HEADING or (blocks[i].emphasised and _short_line(blocks[i])))
        and not _is_label(blocks, i)
        and not is_caption(blocks, i)
    }
    if explicit:
        return explicit
    return {
        i
        for i in range(first, len(blocks) - 1)
        if blocks[i].kind is Kind.PARAGRAPH
        and _short_line(blocks[i])
        and not _is_label(blocks, i)
        and blocks[i + 1].kind in (Kind.PARAGRAPH, Kind.BULLET)
    }


@dataclass
class _Node:
    text: str
    where: str
    children: list[_Node] = field(default_factory=list)

    def frozen(self) -> DraftPoint:
        return DraftPoint(self.text, self.where, tuple(c.frozen() for c in self.children))


@dataclass
class _Section:
    title: str
    where: str
    lead_in: str = ""
    points: list[_Node] = field(default_factory=list)
    prompts_heading: str = ""
    prompts: list[DraftPoint] = field(default_factory=list)
    lead_in_where: str = ""
    links: list[DraftLink] = field(default_factory=list)
    phase: str = "points"  # then "prompts", then "links"
    link_heading: str | None = None

    def awaits_lead_in(self, block: Block) -> bool:
        """Whether the paragraph is the line introducing the bullets (the first, ending in ":")."""
        starting = self.phase == "points" and not self.lead_in and not self.points
        return starting and plain(block.text).endswith(":")

    def add_point(self, text: str, where: str, level: int = 0) -> None:
        siblings = self.points
        for _ in range(level):
            if not siblings:
                break
            siblings = siblings[-1].children
        siblings.append(_Node(text, where))

    def frozen(self) -> DraftSection:
        return DraftSection(
            title=self.title,
            where=self.where,
            lead_in=self.lead_in,
            lead_in_where=self.lead_in_where,
            points=tuple(p.frozen() for p in self.points),
            prompts_heading=self.prompts_heading,
            prompts=tuple(self.prompts),
            links=tuple(self.links),
        )


class _Recogniser:
    def __init__(self, blocks: tuple[Block, ...]) -> None:
        self.blocks = blocks
        self.warnings: list[BriefingWarning] = []
        self.intro: list[DraftPoint] = []
        self.rows: list[TableRow] = []
        self.sections: list[_Section] = []
        self.link_expected_at = -1  # the block after a link heading or a link
        self.link_label_at = -1  # the last link heading
        self.current = -1  # the block being read (in a section)

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(BriefingWarning(where, message))

    def table(self, block: Block) -> bool:
        """Read a publications table into the rows; False if it is some other table."""
        if not is_publications_table(block):
            return False
        rows, warnings = read_publication_rows(block)
        self.rows += rows
        self.warnings += warnings
        return True

    def unplaced(self, block: Block, what: str) -> None:
        """Keep a block that fits nowhere where it stood, and say so."""
        text = _as_markdown(block)
        after_link_heading = self.current == self.link_label_at + 1
        if self.sections and after_link_heading and self.sections[-1].link_heading:
            text = f"{escape_markdown(self.sections[-1].link_heading)}: {text}"
        if not self.sections:
            self.intro.append(DraftPoint(text, block.where))
            self.warn(block.where, f"{what}, outside the usual structure, is kept in the intro")
            return
        section = self.sections[-1]
        for line in text.split("\n") if block.kind is Kind.TABLE else [text]:
            section.add_point(line, block.where)
        self.warn(
            block.where,
            f"{what}, outside the usual structure, is kept as a bullet in the section "
            f"“{section.title}”",
        )

    def before_sections(self, index: int) -> None:
        block = self.blocks[index]
        if block.kind is Kind.TABLE:
            if not self.table(block):
                self.unplaced(block, "A table that is not the publications table")
        elif is_caption(self.blocks, index):
            return  # the publications table's caption
        elif block.kind is Kind.OTHER:
            self.unplaced(block, _capitalised(block.what))
        elif block.kind is Kind.BULLET:
            self.intro.append(
                DraftPoint(f"{'  ' * min(block.level, DEEPEST)}- {block.text}", block.where)
            )
        else:
            self.intro.append(DraftPoint(_as_markdown(block), block.where))

    def in_section(self, index: int) -> None:
        block, section = self.blocks[index], self.sections[-1]
        self.current = index
        text_block = block.kind in TEXT_KINDS
        if block.kind is Kind.TABLE:
            if not self.table(block):
                self.unplaced(block, "A table that is not the publications table")
        elif text_block and is_prompts_label(block.text) and not section.prompts_heading:
            section.prompts_heading = plain(block.text).rstrip(":")
            section.phase = "prompts"
        elif text_block and _is_link_label(self.blocks, index):
            section.link_heading = plain(block.text).rstrip(":")
            section.phase = "links"
            self.link_expected_at = index + 1
            self.link_label_at = index
        elif block.kind is Kind.LINK or (block.kind is Kind.BULLET and section.phase == "links"):
            self.link(block, section)
            self.link_expected_at = index + 1
        elif block.kind is Kind.BULLET:
            self.bullet(block, section)
        elif block.kind is Kind.PARAGRAPH and self.names_a_document(index):
            section.links.append(
                DraftLink(plain(block.text), None, section.link_heading, block.where)
            )
            self.link_expected_at = index + 1
        elif block.kind is Kind.PARAGRAPH and section.awaits_lead_in(block):
            section.lead_in, section.lead_in_where = block.text.strip(), block.where
        elif block.kind is Kind.OTHER:
            self.unplaced(block, _capitalised(block.what))
        else:
            self.unplaced(block, "A paragraph")

    def names_a_document(self, index: int) -> bool:
        """Whether a paragraph is a link's words without its address (none pasted in yet).

        It is, when it is one line straight after a "Link to document" heading or another
        link, and does not read as a sentence.
        """
        words = plain(self.blocks[index].text)
        return (
            index == self.link_expected_at
            and "\n" not in self.blocks[index].text.strip()
            and len(words.split()) <= 2 * HEADING_WORDS
            and not words.endswith((".", "!", ":"))
        )

    def bullet(self, block: Block, section: _Section) -> None:
        if section.phase == "prompts":
            if block.level:
                self.warn(
                    block.where,
                    "a nested prompt; prompts cannot nest, so it is a prompt of its own",
                )
            section.prompts.append(DraftPoint(block.text.strip(), block.where))
        else:
            if block.level > DEEPEST:
                self.warn(
                    block.where,
                    f"a bullet nested {block.level + 1} levels deep; kept at level {DEEPEST + 1}",
                )
            section.add_point(block.text.strip(), block.where, min(block.level, DEEPEST))

    def link(self, block: Block, section: _Section) -> None:
        if block.kind is Kind.BULLET:
            found = sole_link(block.text)
            if found is None:
                self.unplaced(block, "A bullet under a link heading that is not a link")
                return
            text, url = found.text, found.url
        else:
            text, url = block.text, block.url
        section.links.append(
            DraftLink(plain(escape_markdown(text)), url, section.link_heading, block.where)
        )

    def open_section(self, block: Block) -> None:
        self.sections.append(_Section(plain(block.text), block.where))


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _as_markdown(block: Block) -> str:
    if block.kind is Kind.TABLE:
        return "\n".join(" | ".join(row) for row in block.rows)
    if block.kind is Kind.LINK:
        text = escape_markdown(block.text)
        return f"[{text}]({block.url})" if block.url else text
    if block.kind is Kind.BULLET:
        return f"{'  ' * min(block.level, DEEPEST)}- {block.text}"
    if block.emphasised or block.kind is Kind.HEADING:
        return block.text if block.emphasised else f"**{block.text}**"
    return block.text


def _title_and_date(blocks: tuple[Block, ...]) -> tuple[str, int, date | None]:
    """The paper's title, the index of the first block after the title and date, and the date."""
    first = next((i for i, b in enumerate(blocks) if b.kind in TEXT_KINDS), None)
    if first is None:
        raise BriefingError("has no title: its first lines should be the title and the date")
    lines = blocks[first].text.strip().split("\n")
    if len(lines) > 1 and (dated := parse_when(lines[-1])) is not None:  # title and date as one
        return plain(" ".join(lines[:-1])), first + 1, dated[0]
    title = plain(blocks[first].text)
    after = first + 1
    if after < len(blocks) and blocks[after].kind in TEXT_KINDS:
        found = parse_when(blocks[after].text)
        if found is not None:
            return title, after + 1, found[0]
    return title, after, None


def recognise(blocks: tuple[Block, ...]) -> Briefing:
    """The briefing's structure; BriefingError (without the file name) if there is none."""
    if not blocks:
        raise BriefingError("is empty: there is nothing in it to import")
    title, start, issue_date = _title_and_date(blocks)
    starts = section_starts(blocks, start)
    if not starts:
        raise BriefingError(
            "has no recognisable section: expected headings for the reports, each followed by "
            "a lead-in line and bullets (see docs/importing.md)"
        )
    reader = _Recogniser(blocks)
    for index in range(start, len(blocks)):
        if index in starts:
            reader.open_section(blocks[index])
        elif reader.sections:
            reader.in_section(index)
        else:
            reader.before_sections(index)
    sections = _settled([s.frozen() for s in reader.sections], reader)
    return Briefing(
        title=title,
        issue_date=issue_date,
        intro=tuple(reader.intro),
        rows=tuple(reader.rows),
        sections=sections,
        warnings=tuple(reader.warnings),
    )


def _settled(sections: list[DraftSection], reader: _Recogniser) -> tuple[DraftSection, ...]:
    """The sections an issue can hold: a heading with nothing under it joins what came before.

    An issue section needs content, and a lead-in needs bullets to introduce;
    rather than fail, such text becomes a bullet, with a warning.
    """
    kept: list[DraftSection] = []
    for section in sections:
        if section.lead_in and not section.points:
            reader.warn(
                section.lead_in_where,
                f"the section “{section.title}” has a lead-in but no bullets; the lead-in is kept as a bullet",
            )
            section = replace(
                section, lead_in="", points=(DraftPoint(section.lead_in, section.lead_in_where),)
            )
        if section.points or section.prompts or section.links:
            kept.append(section)
            continue
        heading = f"**{escape_markdown(section.title)}**"
        if kept:
            last = kept[-1]
            kept[-1] = replace(last, points=(*last.points, DraftPoint(heading, section.where)))
            place = f"kept as a bullet in the section “{last.title}”"
        else:
            reader.intro.append(DraftPoint(heading, section.where))
            place = "kept in the intro"
        reader.warn(section.where, f"the heading “{section.title}” has nothing under it; {place}")
    return tuple(kept)
