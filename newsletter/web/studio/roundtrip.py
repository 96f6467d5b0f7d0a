"""Write the studio's form back into the issue's YAML, keeping everything the form did not change.

The team also edits issue files by hand and reviews them in git, so a save
from the studio must look like a careful person's edit: comments, key order,
quoting and blank lines of untouched parts stay exactly as they were, and
only the values that changed are written. ruamel.yaml's round-trip mode
keeps all of that; each value is compared with what the file holds and left
alone when equal. Sections are matched by their `id`, so moving or removing
one keeps the comments and keys (e.g. `themes`) of the others. Links are
matched by position, keeping keys the form does not show (`attachment`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from newsletter.core.errors import ContentError, Problem
from newsletter.web.studio.issue_form import (
    IssueForm,
    LinkForm,
    PointForm,
    SectionForm,
    form_from_data,
    section_from_data,
    send_at_value,
)

_SLUG = re.compile(r"[^a-z0-9]+")


def round_trip_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the team wrote on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load_document(text: str, where: Any = "issue") -> CommentedMap:
    """The issue file as an editable document; ContentError (located) when it is not YAML."""
    try:
        data = round_trip_yaml().load(text)
    except ValueError as error:  # a date that is not one, e.g. 2023-13-45
        raise ContentError([Problem(where, 1, 1, f"not valid YAML: {error}")]) from None
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        column = mark.column + 1 if mark is not None else 1
        raise ContentError([Problem(where, line, column, f"not valid YAML: {error}")]) from None
    if not isinstance(data, CommentedMap):
        raise ContentError([Problem(where, 1, 1, "an issue file must be a mapping of fields")])
    return data


def dump_document(document: CommentedMap) -> str:
    stream = io.StringIO()
    round_trip_yaml().dump(document, stream)
    return stream.getvalue()


def read_form(text: str, zone: ZoneInfo, where: Any = "issue") -> IssueForm:
    return form_from_data(load_document(text, where), zone)


# --- writing values -------------------------------------------------------------


def _styled(old: Any, new: str) -> Any:
    """`new` in the quoting style the old value had (a literal block for many lines)."""
    if "\n" in new or isinstance(old, LiteralScalarString):
        return LiteralScalarString(new.rstrip("\n") + "\n")
    if isinstance(old, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(new)
    return new


def _flow(values: Sequence[Any]) -> CommentedSeq:
    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def _set(node: CommentedMap, key: str, value: Any, *, optional: bool = False) -> None:
    """Set `key` when its value differs; remove an optional key left empty."""
    if optional and value in ("", None, [], ()):
        if key in node:
            del node[key]
        return
    old = node.get(key)
    if isinstance(value, str):
        if _plain(old) == value:
            return
        node[key] = _styled(old, value)
    elif old != value:
        node[key] = value


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.rstrip("\n")
    return str(value)


def _set_list(
    node: CommentedMap,
    key: str,
    values: Sequence[str],
    *,
    flow: bool,
    optional: bool = False,
    same: Callable[[Any], Sequence[Any]] | None = None,
    unordered: bool = False,
) -> None:
    """Replace a list only when its items changed; new lists keep the file's flow/block style.

    `unordered`: a set of names (checkboxes come back in the page's order, not the file's).
    """
    if optional and not values:
        if key in node:
            del node[key]
        return
    old = node.get(key)
    current = same(old) if same is not None else old
    if isinstance(old, Sequence) and not isinstance(old, str):
        if list(current or []) == list(values):
            return
        if unordered and sorted(map(str, current or [])) == sorted(values):
            return
    keep_flow = old.fa.flow_style() if isinstance(old, CommentedSeq) else flow
    node[key] = _flow(values) if keep_flow else CommentedSeq(values)


def _point_node(point: PointForm) -> Any:
    if not point.points:
        return point.text
    return CommentedMap([("text", point.text), ("points", CommentedSeq(point.points))])


def _apply_points(node: CommentedMap, points: Sequence[PointForm]) -> None:
    old = section_from_data(node).points
    if "points" in node and tuple(old) == tuple(points):
        return
    node["points"] = CommentedSeq(_point_node(p) for p in points)


def _apply_link(node: CommentedMap, link: LinkForm) -> None:
    _set(node, "heading", link.heading, optional=True)
    _set(node, "text", link.text)
    _set(node, "url", link.url, optional=True)
    _set(node, "publication", link.publication, optional=True)


def _apply_links(node: CommentedMap, links: Sequence[LinkForm]) -> None:
    """Links keep the keys the form does not show (`attachment`) by their place in the file."""
    old = node.get("links")
    old_items = list(old) if isinstance(old, CommentedSeq) else []
    if "links" in node and section_from_data(node).links == tuple(links):
        return
    items = []
    used: set[int] = set()
    for link in links:
        origin = link.origin
        reuse = origin is not None and origin < len(old_items) and origin not in used
        item = old_items[origin] if reuse and origin is not None else None
        if isinstance(item, CommentedMap) and origin is not None:
            used.add(origin)
        else:
            item = CommentedMap()
        _apply_link(item, link)
        items.append(item)
    if [id(i) for i in items] == [id(i) for i in old_items]:
        return  # the same maps, changed in place
    if isinstance(old, CommentedSeq) and items:
        del old[:]
        old.extend(items)
    else:
        node["links"] = CommentedSeq(items) if items else _flow([])


def _apply_section(node: CommentedMap, section: SectionForm) -> None:
    _set(node, "id", section.id)
    _set(node, "title", section.title)
    _set(node, "publication", section.publication, optional=True)
    _set_list(node, "audience", section.audience, flow=True, optional=True, unordered=True)
    _set(node, "lead_in", section.lead_in)
    _apply_points(node, section.points)
    _set(node, "prompts_heading", section.prompts_heading, optional=True)
    _set_list(
        node,
        "prompts",
        section.prompts,
        flow=False,
        optional=True,
        same=lambda old: section_from_data({"prompts": old}).prompts,
    )
    _apply_links(node, section.links)


def new_section_id(title: str, taken: set[str]) -> str:
    """An id for a new section, from its title, unique in the issue."""
    base = _SLUG.sub("-", title.lower()).strip("-")[:60].strip("-") or "section"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _apply_sections(document: CommentedMap, sections: Sequence[SectionForm]) -> None:
    old = document.get("sections")
    old_items = list(old) if isinstance(old, CommentedSeq) else []
    by_id = {
        str(item.get("id")): item
        for item in old_items
        if isinstance(item, CommentedMap) and item.get("id")
    }
    taken = {s.id for s in sections if s.id}
    items = []
    for section in sections:
        if not section.id:
            section = SectionForm(
                **{**section.__dict__, "id": new_section_id(section.title, taken)}
            )
            taken.add(section.id)
        item = by_id.pop(section.id, None)
        if item is None:
            item = CommentedMap()
        _apply_section(item, section)
        items.append(item)
    if [id(i) for i in items] == [id(i) for i in old_items]:
        return
    if isinstance(old, CommentedSeq):
        del old[:]
        old.extend(items)
    else:
        document["sections"] = CommentedSeq(items)


def _send_at(document: CommentedMap, form: IssueForm, zone: ZoneInfo) -> None:
    wanted = send_at_value(form, zone)
    if wanted is None:
        if "send_at" in document:
            del document["send_at"]
        return
    current = form_from_data(document, zone)
    if (current.send_date, current.send_time) == (form.send_date, form.send_time):
        return
    text = wanted.isoformat() if isinstance(wanted, datetime) else wanted
    document["send_at"] = DoubleQuotedScalarString(text)


def _date(value: str) -> date | str:
    try:
        return date.fromisoformat(value)
    except ValueError:
        # Written as typed, quoted so it reads as text: `validate` says what is wrong with it.
        quoted: str = DoubleQuotedScalarString(value)
        return quoted


def apply_form(document: CommentedMap, form: IssueForm, zone: ZoneInfo) -> None:
    """Change `document` to hold the form's values, touching only what differs."""
    for key in ("title", "subject", "preheader"):
        _set(document, key, getattr(form, key))
    if _plain(document.get("date")) != form.date:
        document["date"] = _date(form.date)
    _send_at(document, form, zone)
    _set_list(document, "audience", form.audience, flow=True, unordered=True)
    _set(document, "intro", form.intro)
    _apply_sections(document, form.sections)


def edited_text(text: str, form: IssueForm, zone: ZoneInfo) -> str:
    """The issue file's text with the form's values written in (the file itself is untouched)."""
    document = load_document(text)
    apply_form(document, form, zone)
    return dump_document(document)
