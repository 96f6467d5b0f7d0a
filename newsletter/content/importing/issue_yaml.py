"""Write the recognised briefing as an issue file's text: a draft that passes `validate`.

Every bullet, prompt and link of the paper goes in, in the paper's order.
What an issue cannot hold as it stands (a link with no address and no
catalogue publication, a link address an email may not carry) is kept as
words in a bullet, with a warning, rather than dropped. The list of warnings
heads the file as comments, so the person checking has it beside the text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from newsletter.content.catalogue import Catalogue, Publication
from newsletter.content.importing.blocks import BriefingWarning
from newsletter.content.importing.briefing import Briefing, DraftLink, DraftPoint, DraftSection
from newsletter.content.importing.inline import safe_markdown
from newsletter.content.importing.text import escape_markdown, slug, unique
from newsletter.content.importing.ties import link_publication, section_publication
from newsletter.core.checks import link_problem


@dataclass(frozen=True)
class IssueDefaults:
    """What the paper does not say, taken from an earlier issue (or the settings)."""

    audience: tuple[str, ...]
    reply_to: str
    origin: str  # where they came from, for the file's header comment


@dataclass(frozen=True)
class DraftIssue:
    text: str
    warnings: tuple[BriefingWarning, ...]


class _Writer:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.warnings: list[BriefingWarning] = []

    def markdown(self, text: str, where: str) -> str:
        kept, problems = safe_markdown(text)
        for why in problems:
            self.warnings.append(BriefingWarning(where, f"{why}; kept as words without the link"))
        return kept

    def point(self, point: DraftPoint) -> Any:
        text = self.markdown(point.text, point.where)
        if not point.points:
            return text
        mapping = CommentedMap()
        mapping["text"] = text
        mapping["points"] = CommentedSeq(self.point(p) for p in point.points)
        return mapping

    def link(
        self, link: DraftLink, tie: Publication | None, section: DraftSection
    ) -> CommentedMap | str:
        """The issue's link, or the words of a link an issue cannot hold, for a bullet."""
        url = link.url
        if url and (why := link_problem(url)):
            self.warnings.append(BriefingWarning(link.where, f"{why}; the address was left out"))
            url = None
        if url is None and tie is None:
            label = f"{link.heading}: " if link.heading else ""
            self.warnings.append(
                BriefingWarning(
                    link.where,
                    f"the link “{link.text}” has no address and matches no catalogue "
                    f"publication; kept as a bullet in the section “{section.title}”: "
                    "add its address",
                )
            )
            return escape_markdown(f"{label}{link.text}")
        mapping = CommentedMap()
        if link.heading:
            mapping["heading"] = link.heading
        mapping["text"] = link.text
        if url:
            mapping["url"] = url
        if tie is not None:
            mapping["publication"] = tie.id
        return mapping

    def section(self, section: DraftSection, section_id: str) -> CommentedMap:
        ties = [link_publication(link, self.catalogue) for link in section.links]
        publication, ambiguous = section_publication(section, ties, self.catalogue)
        if ambiguous is not None:
            self.warnings.append(ambiguous)
        if publication is not None:  # a link without an address is to the section's report
            ties = [
                tie or (publication if link.url is None and len(section.links) == 1 else None)
                for tie, link in zip(ties, section.links, strict=True)
            ]
        points: list[Any] = [self.point(p) for p in section.points]
        links = CommentedSeq()
        for link, tie in zip(section.links, ties, strict=True):
            written = self.link(link, tie, section)
            (points if isinstance(written, str) else links).append(written)
        mapping = CommentedMap()
        mapping["id"] = section_id
        mapping["title"] = section.title
        if publication is not None:
            mapping["publication"] = publication.id
        if section.lead_in:
            mapping["lead_in"] = self.markdown(section.lead_in, section.lead_in_where)
        if points:
            mapping["points"] = CommentedSeq(points)
        if section.prompts_heading:
            mapping["prompts_heading"] = section.prompts_heading
        if section.prompts:
            mapping["prompts"] = CommentedSeq(
                self.markdown(p.text, p.where) for p in section.prompts
            )
        if links:
            mapping["links"] = links
        return mapping


def preheader(briefing: Briefing) -> str:
    """One line for the inbox: the first reports the issue covers."""
    titles = [s.title for s in briefing.sections]
    if len(titles) > 3:
        return f"{', '.join(titles[:3])} and more"
    if len(titles) > 1:
        return f"{', '.join(titles[:-1])} and {titles[-1]}"
    return titles[0]


def _header(source_name: str, defaults: IssueDefaults, warnings: list[BriefingWarning]) -> str:
    lines = [
        f"Imported by `newsletter import` from {source_name}: a draft, not scheduled and "
        "not approved.",
        f"The audience and reply-to are {defaults.origin}.",
        "Check it against the paper, then `newsletter preview`, add `send_at` and approve.",
    ]
    if warnings:
        lines.append("Check these places of the paper, which did not fit its usual structure:")
        lines += [f"  - {' '.join(str(w).split())}" for w in warnings]  # a comment is one line
    return "\n".join(lines)


def draft_issue(
    briefing: Briefing,
    catalogue: Catalogue,
    issue_id: str,
    issue_date: date,
    defaults: IssueDefaults,
    source_name: str,
    earlier_warnings: tuple[BriefingWarning, ...] = (),
) -> DraftIssue:
    """The issue's text, and every warning (`earlier_warnings` first: the date, the catalogue)."""
    writer = _Writer(catalogue)
    taken: set[str] = set()
    sections = CommentedSeq(
        writer.section(s, unique(slug(s.title) or "section", taken)) for s in briefing.sections
    )
    issue = CommentedMap()
    issue["id"] = issue_id
    issue["title"] = briefing.title
    issue["subject"] = briefing.title
    issue["preheader"] = preheader(briefing)
    issue["date"] = issue_date
    issue["audience"] = CommentedSeq(defaults.audience)
    issue["audience"].fa.set_flow_style()
    issue["reply_to"] = defaults.reply_to
    if briefing.intro:
        intro = "\n\n".join(writer.markdown(block.text, block.where) for block in briefing.intro)
        issue["intro"] = LiteralScalarString(intro + "\n")
    issue["sections"] = sections
    warnings = [*earlier_warnings, *briefing.warnings, *writer.warnings]
    issue.yaml_set_start_comment(_header(source_name, defaults, warnings))
    yaml = YAML()
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(issue, out)
    return DraftIssue(out.getvalue(), tuple(warnings))
