"""The publications catalogue and the issues: parse and validate, with locations.

An issue is YAML with Markdown inside. Every problem found is a `Problem`
located at `path:line:column`; loading collects them all so `validate` can
report every mistake at once, and `load_*` raises `ContentError` when any is
an error so nothing can be rendered or sent from broken content.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from newsletter.content.markup import markdown_links
from newsletter.core.checks import did_you_mean, email_problem, link_problem
from newsletter.core.errors import ContentError, Problem
from newsletter.core.fields import FieldReader
from newsletter.core.yamlfile import KeyPath, load_yaml

PUBLICATION_TYPES = (
    "Guidance",
    "Annual report papers",
    "National Review",
    "Practice briefing",
    "Panel briefing",
)
DEFAULT_PROMPTS_HEADING = "For information and consideration"
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Attachment:
    """A separate document of a publication (an executive summary, a practitioners briefing)."""

    id: str
    title: str
    url: str | None = None


@dataclass(frozen=True)
class Publication:
    """One entry of the Panel publications catalogue."""

    id: str
    type: str
    title: str
    published: str  # YYYY-MM
    url: str | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def published_label(self) -> str:
        """The month as people write it, e.g. `April 2019`."""
        year, month = self.published.split("-")
        return f"{calendar.month_name[int(month)]} {year}"

    def attachment(self, attachment_id: str) -> Attachment | None:
        return next((a for a in self.attachments if a.id == attachment_id), None)


@dataclass(frozen=True)
class Catalogue:
    path: Path
    publications: tuple[Publication, ...]

    def get(self, publication_id: str) -> Publication | None:
        return next((p for p in self.publications if p.id == publication_id), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.publications)


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
PUBLICATION_FIELDS = ("id", "type", "title", "published", "url", "attachments")
ATTACHMENT_FIELDS = ("id", "title", "url")


def markdown_link_problems(text: str) -> list[str]:
    """Why each link written inside Markdown text is unsafe (the renderer would drop it)."""
    # A template chooses whether a field is read inline or as blocks (a
    # project's own templates may choose either), and only blocks define
    # `[words][ref]` references, so check the links of both readings.
    targets = dict.fromkeys([*markdown_links(text), *markdown_links(text, block=True)])
    return [why for target in targets if (why := link_problem(target))]


class _Fields(FieldReader):
    """The shared field reader, plus what only content has: ids and Markdown with links."""

    def markdown(self, key_path: KeyPath, text: str) -> str:
        """Check the links written inside a piece of Markdown; return the text."""
        for why in markdown_link_problems(text):
            self.error(key_path, why)
        return text

    def slug(self, mapping: dict[str, Any], key_path: KeyPath) -> str:
        value = self.text(mapping, key_path)
        if value and not SLUG.match(value):
            self.error(
                key_path,
                f"`{value}` is not a valid id: use lower-case letters, digits and hyphens, "
                "e.g. `out-of-routine`",
            )
        return value


# --- catalogue -------------------------------------------------------------


def read_catalogue(path: Path) -> tuple[Catalogue, list[Problem]]:
    """Parse the publications catalogue, returning what could be read and every problem."""
    doc = load_yaml(path)
    fields = _Fields(doc)
    publications: list[Publication] = []
    if doc.data is None:
        if not doc.problems:
            fields.error((), "the catalogue is empty; it needs a `publications:` list")
        return Catalogue(path, ()), fields.problems
    top = fields.mapping(doc.data, (), ("publications",), "the catalogue")
    seen: dict[str, int] = {}
    for index, entry in fields.items(top, ("publications",)):
        key_path: KeyPath = ("publications", index)
        entry = fields.mapping(entry, key_path, PUBLICATION_FIELDS, "a publication")
        if not entry:
            continue
        pub_id = fields.slug(entry, (*key_path, "id"))
        if pub_id in seen:
            fields.error(
                (*key_path, "id"),
                f"the publication id `{pub_id}` is used twice (first on line {seen[pub_id]})",
            )
        elif pub_id:
            seen[pub_id] = doc.where(*key_path, "id")[0]
        pub_type = fields.text(entry, (*key_path, "type"))
        if pub_type and pub_type not in PUBLICATION_TYPES:
            fields.error(
                (*key_path, "type"),
                f"`{pub_type}` is not a publication type{did_you_mean(pub_type, PUBLICATION_TYPES)} "
                f"(types: {', '.join(PUBLICATION_TYPES)})",
            )
        title = fields.text(entry, (*key_path, "title"))
        published = fields.text(entry, (*key_path, "published"))
        if published and not MONTH.match(published):
            fields.error(
                (*key_path, "published"),
                f'`{published}` is not a month; write it as YYYY-MM in quotes, e.g. "2019-04"',
            )
        url = _optional_url(fields, entry, (*key_path, "url"))
        if url is None and "url" not in entry:
            fields.warning(
                key_path,
                f"publication `{pub_id}` has no URL yet; links to it show without a button",
                kind="publications without a URL",
            )
        attachments = []
        attachment_ids: set[str] = set()
        for a_index, raw in fields.items(entry, (*key_path, "attachments")):
            a_path: KeyPath = (*key_path, "attachments", a_index)
            raw = fields.mapping(raw, a_path, ATTACHMENT_FIELDS, "an attachment")
            if not raw:
                continue
            a_id = fields.slug(raw, (*a_path, "id"))
            if a_id in attachment_ids:
                fields.error(
                    (*a_path, "id"), f"the attachment id `{a_id}` is used twice in `{pub_id}`"
                )
            attachment_ids.add(a_id)
            attachments.append(
                Attachment(
                    a_id,
                    fields.text(raw, (*a_path, "title")),
                    _optional_url(fields, raw, (*a_path, "url")),
                )
            )
        publications.append(
            Publication(pub_id, pub_type, title, published, url, tuple(attachments))
        )
    if "publications" not in top and isinstance(doc.data, dict):
        fields.error((), "the catalogue needs a `publications:` list")
    return Catalogue(path, tuple(publications)), fields.problems


def _optional_url(fields: _Fields, mapping: dict[str, Any], key_path: KeyPath) -> str | None:
    value = mapping.get(str(key_path[-1]))
    if value is None:
        return None
    if why := link_problem(value):
        fields.error(key_path, why)
        return None
    return str(value).strip()


# --- send_at ---------------------------------------------------------------


def resolve_send_at(value: Any, zone: ZoneInfo) -> tuple[datetime | None, str | None, str | None]:
    """Read `send_at` as an aware datetime: (when, error, warning).

    A time without an offset is read in the settings' time zone; a local time
    that the clocks skip (spring forward) or pass twice (fall back) is an error
    naming both readings, since guessing could send an hour early or late.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return (
            None,
            "`send_at` needs a time as well as a date, e.g. 2023-05-15T09:00:00+01:00",
            None,
        )
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return (
                None,
                f"`send_at` `{value}` is not an ISO 8601 date and time, "
                "e.g. 2023-05-15T09:00:00+01:00",
                None,
            )
    else:
        return None, "`send_at` must be a date and time, e.g. 2023-05-15T09:00:00+01:00", None
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment, None, None
    earlier = moment.replace(tzinfo=zone, fold=0)
    later = moment.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() != later.utcoffset():
        first, second = sorted((earlier, later), key=lambda m: m.astimezone(ZoneInfo("UTC")))
        round_trip = earlier.astimezone(ZoneInfo("UTC")).astimezone(zone)
        if round_trip.replace(tzinfo=None) != moment:
            problem = f"does not exist in {zone.key} (the clocks go forward)"
        else:
            problem = f"happens twice in {zone.key} (the clocks go back)"
        return (
            None,
            f"`send_at` {moment.isoformat()} has no time zone and {problem}; it could mean "
            f"{first.isoformat()} or {second.isoformat()}: write the offset you mean",
            None,
        )
    return (
        earlier,
        None,
        f"`send_at` has no time zone; read as {zone.key} time, {earlier.isoformat()}",
    )


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
    fields = _Fields(doc)
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
    issue_date = top.get("date")
    if not isinstance(issue_date, date) or isinstance(issue_date, datetime):
        if "date" in top:
            fields.error(("date",), "`date` must be a date written as YYYY-MM-DD, e.g. 2023-05-15")
        else:
            fields.error((), "`date` is required (the issue date, YYYY-MM-DD)")
        issue_date = date(1970, 1, 1)
    send_at: datetime | None = None
    if top.get("send_at") is not None:  # absent or empty: not scheduled
        send_at, error, warning = resolve_send_at(top["send_at"], zone)
        if error:
            fields.error(("send_at",), error)
        if warning:
            fields.warning(("send_at",), warning)
    approved = top.get("approved", False)
    if not isinstance(approved, bool):
        fields.error(("approved",), "`approved` must be true or false")
        approved = False
    audience = _segments(fields, top, ("audience",), segment_names)
    if not audience and "audience" in top:
        fields.error(("audience",), "`audience` must name at least one segment")
    elif "audience" not in top:
        fields.error((), "`audience` is required: the segments this issue goes to")
    reply_to = fields.text(top, ("reply_to",), one_line=True)
    if reply_to and (why := email_problem(reply_to)):
        fields.error(("reply_to",), why)
    intro = fields.markdown(("intro",), fields.text(top, ("intro",), required=False))

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
        sections=tuple(sections),
    )
    return issue, fields.problems


def _issue_id(fields: _Fields, top: dict[str, Any], path: Path) -> str:
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
    fields: _Fields,
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


def _read_points(fields: _Fields, mapping: dict[str, Any], key_path: KeyPath) -> tuple[Point, ...]:
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
    fields: _Fields,
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
    fields: _Fields, key_path: KeyPath, publication_id: str, catalogue: Catalogue
) -> None:
    if catalogue.get(publication_id) is None:
        fields.error(
            key_path,
            f"unknown publication id `{publication_id}`{did_you_mean(publication_id, catalogue.ids)} "
            f"(publications are listed in {catalogue.path.name})",
        )


def _read_link(fields: _Fields, raw: Any, key_path: KeyPath, catalogue: Catalogue) -> Link | None:
    raw = fields.mapping(raw, key_path, LINK_FIELDS, "a link")
    if not raw:
        return None
    text = fields.text(raw, (*key_path, "text"))
    heading = fields.text(raw, (*key_path, "heading"), required=False) or None
    url = _optional_url(fields, raw, (*key_path, "url"))
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


def load_issue_file(
    path: Path, catalogue: Catalogue, segment_names: Collection[str] | None, zone: ZoneInfo
) -> Issue:
    """Parse one issue; raise ContentError if it has any error."""
    issue, problems = read_issue(path, catalogue, segment_names, zone)
    if issue is None or any(p.is_error for p in problems):
        raise ContentError(problems)
    return issue
