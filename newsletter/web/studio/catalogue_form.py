"""Add or correct one entry of the publications catalogue (issues/publications.yaml) from a form.

The catalogue is written like the issue: round-trip, so its comments and
the layout of other entries stay as they were, atomically, and only after
the new text passes the catalogue's own checks (`read_catalogue`) — a
mistake in the form never leaves a broken catalogue behind.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from newsletter.content.catalogue import read_catalogue
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.bounds import project_file
from newsletter.core.errors import ContentError, NewsletterError
from newsletter.core.project import Project
from newsletter.web.studio.checks import DRAFTS_DIR
from newsletter.web.studio.roundtrip import round_trip_yaml


@dataclass(frozen=True)
class CatalogueEntry:
    id: str = ""
    type: str = ""
    title: str = ""
    published: str = ""  # YYYY-MM
    url: str = ""

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> CatalogueEntry:
        return cls(
            *(" ".join(str(values.get(name, "")).split()) for name in ("id", "type", "title")),
            *(str(values.get(name, "")).strip() for name in ("published", "url")),
        )

    @classmethod
    def existing(cls, project: Project, publication_id: str) -> CatalogueEntry | None:
        found = project.catalogue().get(publication_id)
        if found is None:
            return None
        return cls(found.id, found.type, found.title, found.published, found.url or "")


def _entry_map(document: CommentedMap) -> CommentedSeq:
    publications = document.get("publications")
    if not isinstance(publications, CommentedSeq):
        raise NewsletterError("the catalogue has no `publications:` list to add to")
    return publications


def catalogue_text(text: str, entry: CatalogueEntry) -> str:
    """The catalogue's text with `entry` added, or the entry with its id corrected in place."""
    yaml = round_trip_yaml()
    document = yaml.load(text)
    if not isinstance(document, CommentedMap):
        raise NewsletterError("the catalogue is not a block of fields")
    publications = _entry_map(document)
    node = next(
        (p for p in publications if isinstance(p, CommentedMap) and p.get("id") == entry.id), None
    )
    if node is None:
        node = CommentedMap()
        publications.append(node)
    for key, value in (
        ("id", entry.id),
        ("type", entry.type),
        ("title", entry.title),
        ("published", DoubleQuotedScalarString(entry.published)),
        ("url", entry.url),
    ):
        if key == "url" and not value:
            node.pop("url", None)
        elif str(node.get(key, "")) != str(value):
            node[key] = value
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def save_catalogue_entry(project: Project, entry: CatalogueEntry) -> None:
    """Write the entry into the catalogue if the result passes its checks; ContentError if not."""
    path = project_file(project.catalogue_path, project.root_dir)
    new_text = catalogue_text(path.read_text(encoding="utf-8"), entry)
    trial = project.root_dir / DRAFTS_DIR / path.name
    write_text_atomic(trial, new_text)
    _, problems = read_catalogue(trial)
    errors = [p for p in problems if p.is_error]
    if errors:
        raise ContentError(errors)
    write_text_atomic(path, new_text)
