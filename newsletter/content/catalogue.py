"""The publications catalogue (`issues/publications.yaml`): the Panel's reports that issues link to."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from pathlib import Path

from newsletter.content.fields import ContentFields, optional_url
from newsletter.core.checks import did_you_mean
from newsletter.core.errors import Problem
from newsletter.core.yamlfile import KeyPath, load_yaml

PUBLICATION_TYPES = (
    "Guidance",
    "Annual report papers",
    "National Review",
    "Practice briefing",
    "Panel briefing",
)
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
PUBLICATION_FIELDS = ("id", "type", "title", "published", "url", "attachments")
ATTACHMENT_FIELDS = ("id", "title", "url")


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


def read_catalogue(path: Path) -> tuple[Catalogue, list[Problem]]:
    """Parse the publications catalogue, returning what could be read and every problem."""
    doc = load_yaml(path)
    fields = ContentFields(doc)
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
        url = optional_url(fields, entry, (*key_path, "url"))
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
                    optional_url(fields, raw, (*a_path, "url")),
                )
            )
        publications.append(
            Publication(pub_id, pub_type, title, published, url, tuple(attachments))
        )
    if "publications" not in top and isinstance(doc.data, dict):
        fields.error((), "the catalogue needs a `publications:` list")
    return Catalogue(path, tuple(publications)), fields.problems
