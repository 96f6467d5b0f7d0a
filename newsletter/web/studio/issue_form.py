"""An issue as the studio's form shows it, read from the issue's YAML and from a form post.

The form is a flat view of the fields a comms officer edits. Bullets are one
textarea, one bullet a line ("- text"), a bullet indented by two spaces
sitting under the one above, as in Markdown; prompts are one a line. The
form knows nothing about YAML formatting: `roundtrip.py` writes it back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from werkzeug.datastructures import MultiDict

from newsletter.content.send_time import resolve_send_at

# Enough for the longest real issue many times over; a post beyond is refused unread.
MAX_SECTIONS = 60
MAX_LINKS = 20
BULLET_MARK = re.compile(r"^[-*•]\s+")


@dataclass(frozen=True)
class LinkForm:
    """One link; `origin` is its position in the file, so its other keys stay with it."""

    heading: str = ""
    text: str = ""
    url: str = ""
    publication: str = ""
    origin: int | None = None

    @property
    def blank(self) -> bool:
        return not (self.text or self.url or self.publication)


@dataclass(frozen=True)
class PointForm:
    """A bullet and the bullets under it."""

    text: str
    points: tuple[str, ...] = ()


@dataclass(frozen=True)
class SectionForm:
    id: str = ""
    title: str = ""
    publication: str = ""
    lead_in: str = ""
    points: tuple[PointForm, ...] = ()
    prompts_heading: str = ""
    prompts: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()
    links: tuple[LinkForm, ...] = ()

    @property
    def points_text(self) -> str:
        return points_to_text(self.points)

    @property
    def prompts_text(self) -> str:
        return "\n".join(self.prompts)


@dataclass(frozen=True)
class IssueForm:
    title: str = ""
    subject: str = ""
    preheader: str = ""
    date: str = ""
    send_date: str = ""
    send_time: str = ""
    audience: tuple[str, ...] = ()
    intro: str = ""
    sections: tuple[SectionForm, ...] = field(default_factory=tuple)


# --- bullets as text ------------------------------------------------------------


def points_to_text(points: Sequence[PointForm]) -> str:
    lines = []
    for point in points:
        lines.append(f"- {point.text}")
        lines.extend(f"  - {inner}" for inner in point.points)
    return "\n".join(lines)


def points_from_text(text: str) -> tuple[PointForm, ...]:
    """One bullet a line; an indented line goes under the bullet above it."""
    points: list[PointForm] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if not raw.strip():
            continue
        nested = raw[:1].isspace() and bool(points)
        words = BULLET_MARK.sub("", raw.strip())
        if nested:
            last = points[-1]
            points[-1] = PointForm(last.text, (*last.points, words))
        else:
            points.append(PointForm(words))
    return tuple(points)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _point(value: Any) -> PointForm:
    if isinstance(value, Mapping):
        inner = value.get("points") or []
        return PointForm(_one_line(value.get("text")), tuple(_one_line(p) for p in inner))
    return PointForm(_one_line(value))


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(str(item) for item in value)
    return ()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# --- from the YAML --------------------------------------------------------------


def send_at_fields(value: Any, zone: ZoneInfo) -> tuple[str, str]:
    """`send_at` as the date and time fields show it, in the project's time zone."""
    if value is None:
        return "", ""
    moment, _, _ = resolve_send_at(value, zone)
    if moment is None:
        return str(value), ""
    local = moment.astimezone(zone)
    return local.date().isoformat(), local.strftime("%H:%M")


def _link_form(value: Any, origin: int) -> LinkForm:
    data = value if isinstance(value, Mapping) else {}
    return LinkForm(
        _text(data.get("heading")),
        _text(data.get("text")),
        _text(data.get("url")),
        _text(data.get("publication")),
        origin,
    )


def section_from_data(value: Any) -> SectionForm:
    data = value if isinstance(value, Mapping) else {}
    return SectionForm(
        id=_text(data.get("id")),
        title=_text(data.get("title")),
        publication=_text(data.get("publication")),
        lead_in=_text(data.get("lead_in")),
        points=tuple(_point(p) for p in (data.get("points") or [])),
        prompts_heading=_text(data.get("prompts_heading")),
        prompts=tuple(_one_line(p) for p in (data.get("prompts") or [])),
        audience=_strings(data.get("audience")),
        links=tuple(_link_form(link, i) for i, link in enumerate(data.get("links") or [])),
    )


def form_from_data(data: Mapping[str, Any], zone: ZoneInfo) -> IssueForm:
    """The form's values for an issue as loaded from its YAML."""
    send_date, send_time = send_at_fields(data.get("send_at"), zone)
    day = data.get("date")
    return IssueForm(
        title=_text(data.get("title")),
        subject=_text(data.get("subject")),
        preheader=_text(data.get("preheader")),
        date=day.isoformat() if isinstance(day, date) else _text(day),
        send_date=send_date,
        send_time=send_time,
        audience=_strings(data.get("audience")),
        intro=_text(data.get("intro")).rstrip("\n"),
        sections=tuple(section_from_data(s) for s in (data.get("sections") or [])),
    )


# --- from a form post -----------------------------------------------------------


def _field(form: MultiDict[str, str], name: str) -> str:
    return form.get(name, "").replace("\r\n", "\n").strip()


def _link_from_post(form: MultiDict[str, str], prefix: str) -> LinkForm:
    origin = _field(form, f"{prefix}origin")
    return LinkForm(
        _field(form, f"{prefix}heading"),
        _field(form, f"{prefix}text"),
        _field(form, f"{prefix}url"),
        _field(form, f"{prefix}publication"),
        int(origin) if origin.isdigit() and int(origin) < MAX_LINKS else None,
    )


def _count(form: MultiDict[str, str], name: str, most: int) -> int:
    try:
        return max(0, min(int(form.get(name, "0")), most))
    except ValueError:
        return 0


def section_from_post(form: MultiDict[str, str], index: int) -> SectionForm:
    prefix = f"sections-{index}-"
    links = [
        _link_from_post(form, f"{prefix}links-{j}-")
        for j in range(_count(form, f"{prefix}link_count", MAX_LINKS))
    ]
    return SectionForm(
        id=_field(form, f"{prefix}id"),
        title=_field(form, f"{prefix}title"),
        publication=_field(form, f"{prefix}publication"),
        lead_in=_field(form, f"{prefix}lead_in"),
        points=points_from_text(form.get(f"{prefix}points", "")),
        prompts_heading=_field(form, f"{prefix}prompts_heading"),
        prompts=tuple(
            line.strip() for line in _field(form, f"{prefix}prompts").split("\n") if line.strip()
        ),
        audience=tuple(form.getlist(f"{prefix}audience")),
        links=tuple(link for link in links if not link.blank),
    )


def form_from_post(form: MultiDict[str, str]) -> IssueForm:
    """The issue as the posted form has it (every value trimmed; blank links dropped)."""
    count = _count(form, "section_count", MAX_SECTIONS)
    return IssueForm(
        title=_field(form, "title"),
        subject=_field(form, "subject"),
        preheader=_field(form, "preheader"),
        date=_field(form, "date"),
        send_date=_field(form, "send_date"),
        send_time=_field(form, "send_time"),
        audience=tuple(form.getlist("audience")),
        intro=_field(form, "intro"),
        sections=tuple(section_from_post(form, i) for i in range(count)),
    )


def send_at_value(form: IssueForm, zone: ZoneInfo) -> datetime | str | None:
    """The moment the date and time fields name (None: not scheduled; text: not a time)."""
    if not form.send_date and not form.send_time:
        return None
    try:
        local = datetime.fromisoformat(f"{form.send_date}T{form.send_time or '00:00'}")
    except ValueError:
        return f"{form.send_date}T{form.send_time}"
    moment, error, _ = resolve_send_at(local.isoformat(), zone)
    return moment if moment is not None and error is None else local.isoformat()
