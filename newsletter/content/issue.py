"""An issue file: parse and validate it against the catalogue, with locations.

An issue is YAML with Markdown inside. Every problem found is a `Problem`
located at `path:line:column`; reading collects them all so `validate` can
report every mistake at once, and `Project.load_issue` raises `ContentError`
when any is an error so nothing can be rendered or sent from broken content.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from newsletter.content.catalogue import Catalogue
from newsletter.content.fields import SLUG, ContentFields, optional_url
from newsletter.content.send_time import resolve_send_at
from newsletter.core.checks import did_you_mean, email_problem
from newsletter.core.errors import Problem
from newsletter.core.yamlfile import KeyPath, YamlDocument, load_yaml

DEFAULT_PROMPTS_HEADING = "For information and consideration"


@dataclass(frozen=True)
class Point:
    """A bullet (Markdown text), with any bullets nested under it."""

    text: str
    points: tuple[Point, ...] = ()


@dataclass(frozen=True)
class Link:
    """A link to a document; `url` is None when the paper gives none yet."""

    text: str
    url: str | None
    heading: str | None = None
    publication_id: str | None = None
    attachment_id: str | None = None


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    lead_in: str
    points: tuple[Point, ...]
    prompts_heading: str
    prompts: tuple[str, ...]
    links: tuple[Link, ...]
    publication_id: str | None = None
    audience: tuple[str, ...] = ()  # empty: everyone the issue goes to
    themes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Issue:
    path: Path
    id: str
    title: str
    subject: str
    preheader: str
    date: date
    send_at: datetime | None  # always time-zone aware; None: not scheduled (sent only by hand)
    approved: bool
    audience: tuple[str, ...]
    reply_to: str
    intro: str
    sections: tuple[Section, ...]

    def section(self, section_id: str) -> Section:
        return next(s for s in self.sections if s.id == section_id)


ISSUE_FIELDS = (
    "id", "title", "subject", "preheader", "date", "send_at", "approved", "audience",
    "reply_to", "intro", "sections",
)  # fmt: skip
SECTION_FIELDS = (
    "id", "title", "publication", "audience", "themes", "lead_in", "points",
    "prompts_heading", "prompts", "links",
)  # fmt: skip
LINK_FIELDS = ("heading", "text", "url", "publication", "attachment")
POINT_FIELDS = ("text", "points")


# --- issues ----------------------------------------------------------------


def read_issue(
    path: Path,
    catalogue: Catalogue,
    segment_names: Collection[str] | None,
    zone: ZoneInfo,
) -> tuple[Issue | None, list[Problem]]:
    """Parse and validate one issue against the catalogue and the defined segments.

    `segment_names` None skips the segment check (no recipients set up yet).
    """
    doc = load_yaml(path)
    fields = ContentFields(doc)
    if doc.data is None:
        if not doc.problems:
            fields.error((), "the issue file is empty")
        return None, fields.problems
    top = fields.mapping(doc.data, (), ISSUE_FIELDS, "an issue")
    if not top:
        return None, fields.problems

    issue_id = _issue_id(fields, top, path)
    title = fields.text(top, ("title",), one_line=True)
    subject = fields.text(top, ("subject",), one_line=True)
    preheader = fields.text(top, ("preheader",), one_line=True)
    issue_date = _issue_date(fields, top)
    send_at = _send_at(fields, top, zone)
    approved = top.get("approved", False)
    if not isinstance(approved, bool):
        fields.error(("approved",), "`approved` must be true or false")
        approved = False
    audience = _issue_audience(fields, top, segment_names)
    reply_to = fields.text(top, ("reply_to",), one_line=True)
    if reply_to and (why := email_problem(reply_to)):
        fields.error(("reply_to",), why)
    intro = fields.markdown(("intro",), fields.text(top, ("intro",), required=False))
    sections = _read_sections(fields, doc, top, catalogue, segment_names)

    if any(p.is_error for p in fields.problems):
        return None, fields.problems
    issue = Issue(
        path=path,
        id=issue_id,
        title=title,
        subject=subject,
        preheader=preheader,
        date=issue_date,
        send_at=send_at,
        approved=approved,
        audience=tuple(audience),
        reply_to=reply_to,
        intro=intro,
        sections=sections,
    )
    return issue, fields.problems


def _issue_date(fields: ContentFields, top: dict[str, Any]) -> date:
    issue_date = top.get("date")
    if isinstance(issue_date, date) and not isinstance(issue_date, datetime):
        return issue_date
    if "date" in top:
        fields.error(("date",), "`date` must be a date written as YYYY-MM-DD, e.g. 2023-05-15")
    else:
        fields.error((), "`date` is required (the issue date, YYYY-MM-DD)")
    return date(1970, 1, 1)


def _send_at(fields: ContentFields, top: dict[str, Any], zone: ZoneInfo) -> datetime | None:
    if top.get("send_at") is None:  # absent or empty: not scheduled
        return None
    send_at, error, warning = resolve_send_at(top["send_at"], zone)
    if error:
        fields.error(("send_at",), error)
    if warning:
        fields.warning(("send_at",), warning)
    return send_at


def _issue_audience(
    fields: ContentFields, top: dict[str, Any], segment_names: Collection[str] | None
) -> list[str]:
    audience = _segments(fields, top, ("audience",), segment_names)
    if not audience and "audience" in top:
        fields.error(("audience",), "`audience` must name at least one segment")
    elif "audience" not in top:
        fields.error((), "`audience` is required: the segments this issue goes to")
    return audience


def _read_sections(
    fields: ContentFields,
    doc: YamlDocument,
    top: dict[str, Any],
    catalogue: Catalogue,
    segment_names: Collection[str] | None,
) -> tuple[Section, ...]:
    sections: list[Section] = []
    section_ids: dict[str, int] = {}
    for index, raw in fields.items(top, ("sections",)):
        section = _read_section(fields, raw, ("sections", index), catalogue, segment_names)
        if section is None:
            continue
        if section.id in section_ids:
            fields.error(
                ("sections", index, "id"),
                f"the section id `{section.id}` is used twice (first on line {section_ids[section.id]})",
            )
        else:
            section_ids[section.id] = doc.where("sections", index, "id")[0]
        sections.append(section)
    if not sections and not any(p.is_error for p in fields.problems):
        fields.error(
            ("sections",) if "sections" in top else (), "the issue needs at least one section"
        )
    return tuple(sections)


def _issue_id(fields: ContentFields, top: dict[str, Any], path: Path) -> str:
    """The issue's id, which is its file name: `id:` may repeat it, never differ from it.

    The id names the issue everywhere (the ledger, approvals/, the archive, the
    command line), so one issue file must never answer to two names, nor two
    files to one.
    """
    stem = path.stem
    for other in (path.with_suffix(suffix) for suffix in (".yaml", ".yml")):
        if other != path and other.exists():
            fields.error(
                (),
                f"{path.name} and {other.name} are both the issue `{stem}` (an issue's id is its "
                "file name); keep one and delete or rename the other",
            )
    if top.get("id") is not None:
        written = fields.slug(top, ("id",))
        if written and written != stem:
            fields.error(
                ("id",),
                f"the id `{written}` does not match the file name {path.name}: an issue's id is "
                f"its file name, so rename the file to {written}{path.suffix} or change the id "
                f"to `{stem}` (or remove the `id:` line)",
            )
            return written
    if not SLUG.match(stem):
        fields.error(
            (),
            f"the file name {path.name} cannot be an issue id: rename it using lower-case "
            "letters, digits and hyphens, e.g. 2023-08-news-update.yaml",
        )
    return stem


def _segments(
    fields: ContentFields,
    mapping: dict[str, Any],
    key_path: KeyPath,
    segment_names: Collection[str] | None,
) -> list[str]:
    names = fields.text_list(mapping, key_path)
    if segment_names is not None:
        for index, name in enumerate(names):
            if name not in segment_names:
                fields.error(
                    (*key_path, index)
                    if isinstance(mapping.get(str(key_path[-1])), list)
                    else key_path,
                    f"segment `{name}` is not defined in recipients/segments.yaml"
                    f"{did_you_mean(name, segment_names)}",
                )
    return names


def _read_points(
    fields: ContentFields, mapping: dict[str, Any], key_path: KeyPath
) -> tuple[Point, ...]:
    points = []
    for index, raw in fields.items(mapping, key_path):
        point_path: KeyPath = (*key_path, index)
        if isinstance(raw, str | int | float) and not isinstance(raw, bool):
            if str(raw).strip():
                points.append(Point(fields.markdown(point_path, str(raw).strip())))
            else:
                fields.error(point_path, "this bullet is empty")
            continue
        raw = fields.mapping(raw, point_path, POINT_FIELDS, "a bullet with nested bullets")
        if raw:
            text = fields.markdown((*point_path, "text"), fields.text(raw, (*point_path, "text")))
            points.append(Point(text, _read_points(fields, raw, (*point_path, "points"))))
    return tuple(points)


def _read_section(
    fields: ContentFields,
    raw: Any,
    key_path: KeyPath,
    catalogue: Catalogue,
    segment_names: Collection[str] | None,
) -> Section | None:
    raw = fields.mapping(raw, key_path, SECTION_FIELDS, "a section")
    if not raw:
        return None
    section_id = fields.slug(raw, (*key_path, "id"))
    title = fields.text(raw, (*key_path, "title"))
    publication_id = raw.get("publication")
    if publication_id is not None:
        publication_id = str(publication_id)
        _check_publication(fields, (*key_path, "publication"), publication_id, catalogue)
    audience = _segments(fields, raw, (*key_path, "audience"), segment_names)
    themes = fields.text_list(raw, (*key_path, "themes"))
    for t_index, theme in enumerate(themes):
        if not SLUG.match(theme):
            fields.error(
                (*key_path, "themes", t_index),
                f"theme `{theme}` must be lower-case words joined by hyphens, e.g. `domestic-abuse`",
            )
    lead_in = fields.markdown(
        (*key_path, "lead_in"), fields.text(raw, (*key_path, "lead_in"), required=False)
    )
    points = _read_points(fields, raw, (*key_path, "points"))
    prompts_heading = (
        fields.text(raw, (*key_path, "prompts_heading"), required=False) or DEFAULT_PROMPTS_HEADING
    )
    prompts = fields.text_list(raw, (*key_path, "prompts"))
    for p_index, prompt in enumerate(prompts):
        fields.markdown((*key_path, "prompts", p_index), prompt)
    links = []
    for l_index, link_raw in fields.items(raw, (*key_path, "links")):
        link = _read_link(fields, link_raw, (*key_path, "links", l_index), catalogue)
        if link is not None:
            links.append(link)
    if lead_in and not points:
        fields.error(
            (*key_path, "lead_in"),
            f"section `{section_id or title}` has a `lead_in` but no `points`: the lead-in "
            "introduces the bullet points that follow it; add `points`, or remove the lead-in",
        )
    if not lead_in and not points and not prompts and not links:
        fields.error(
            key_path,
            f"section `{section_id or title}` is empty: give it a `lead_in`, `points`, "
            "`prompts` or `links`",
        )
    return Section(
        id=section_id,
        title=title,
        lead_in=lead_in,
        points=points,
        prompts_heading=prompts_heading,
        prompts=tuple(prompts),
        links=tuple(links),
        publication_id=publication_id,
        audience=tuple(audience),
        themes=tuple(themes),
    )


def _check_publication(
    fields: ContentFields, key_path: KeyPath, publication_id: str, catalogue: Catalogue
) -> None:
    if catalogue.get(publication_id) is None:
        fields.error(
            key_path,
            f"unknown publication id `{publication_id}`{did_you_mean(publication_id, catalogue.ids)} "
            f"(publications are listed in {catalogue.path.name})",
        )


def _read_link(
    fields: ContentFields, raw: Any, key_path: KeyPath, catalogue: Catalogue
) -> Link | None:
    raw = fields.mapping(raw, key_path, LINK_FIELDS, "a link")
    if not raw:
        return None
    text = fields.text(raw, (*key_path, "text"))
    heading = fields.text(raw, (*key_path, "heading"), required=False) or None
    url = optional_url(fields, raw, (*key_path, "url"))
    publication_id = raw.get("publication")
    attachment_id = raw.get("attachment")
    publication = None
    if publication_id is not None:
        publication_id = str(publication_id)
        _check_publication(fields, (*key_path, "publication"), publication_id, catalogue)
        publication = catalogue.get(publication_id)
    if attachment_id is not None:
        attachment_id = str(attachment_id)
        if publication_id is None:
            fields.error(
                (*key_path, "attachment"),
                "an `attachment` needs the `publication` it belongs to",
            )
        elif publication is not None and publication.attachment(attachment_id) is None:
            known = [a.id for a in publication.attachments]
            fields.error(
                (*key_path, "attachment"),
                f"publication `{publication_id}` has no attachment `{attachment_id}`"
                f"{did_you_mean(attachment_id, known)}",
            )
    if url is None and "url" not in raw:
        if publication is not None:
            attachment = publication.attachment(attachment_id) if attachment_id else None
            url = attachment.url if attachment is not None else publication.url
            if url is None:
                fields.warning(
                    key_path,
                    f"the link `{text}` has no URL yet (none in the catalogue); "
                    "it is shown as text without a button",
                    kind="links without a URL",
                )
        elif publication_id is None:
            fields.error(key_path, f"the link `{text}` needs a `url` or a catalogue `publication`")
    return Link(text, url, heading, publication_id, attachment_id)
