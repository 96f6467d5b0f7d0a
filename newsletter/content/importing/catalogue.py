"""Match the paper's publications table against issues/publications.yaml, and add what is new.

A row is the catalogue's entry when their titles are the same words (case,
curly quotes and spacing aside); such entries are never added twice. A row
whose title is only close to an entry's (a typo, a word added) is reported
with its place and left out: guessing could tie the issue to the wrong report.
New entries are appended with ruamel.yaml's round trip, so the comments,
order and layout of the file the team keeps by hand stay as they were.
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from newsletter.content.catalogue import Attachment, Catalogue, Publication
from newsletter.content.importing.blocks import BriefingWarning
from newsletter.content.importing.briefing import TableRow
from newsletter.content.importing.text import comparable, slug, unique
from newsletter.core.errors import BriefingError

NEAR = 0.9  # difflib ratio from which two different titles are likely the same report


@dataclass(frozen=True)
class CatalogueMatch:
    """The paper's table against the catalogue: what matched, what is new, what to check."""

    matched: tuple[Publication, ...]
    added: tuple[Publication, ...]
    warnings: tuple[BriefingWarning, ...]

    def everything(self, catalogue: Catalogue) -> Catalogue:
        return Catalogue(catalogue.path, (*catalogue.publications, *self.added))


def _differences(row: TableRow, entry: Publication) -> str:
    said = []
    if row.type != entry.type:
        said.append(f"the type “{row.type}” (the catalogue says “{entry.type}”)")
    if row.published != entry.published:
        said.append(f"the date {row.published} (the catalogue says {entry.published})")
    return " and ".join(said)


def match_rows(rows: tuple[TableRow, ...], catalogue: Catalogue) -> CatalogueMatch:
    by_title = {comparable(p.title): p for p in catalogue.publications}
    taken = set(catalogue.ids)
    matched: list[Publication] = []
    added: list[Publication] = []
    warnings: list[BriefingWarning] = []
    for row in rows:
        key = comparable(row.title)
        entry = by_title.get(key)
        if entry is not None:
            if entry in added:
                warnings.append(
                    BriefingWarning(
                        row.where, f"“{row.title}” is listed twice in the paper; added once"
                    )
                )
            elif entry not in matched:
                matched.append(entry)
            if differences := _differences(row, entry):
                warnings.append(
                    BriefingWarning(
                        row.where,
                        f"“{row.title}” is in the catalogue as `{entry.id}`, but the paper gives {differences}; the catalogue was left as it is",
                    )
                )
            continue
        near = _near(key, catalogue)
        if near is not None:
            other = near
            warnings.append(
                BriefingWarning(
                    row.where,
                    f"“{row.title}” is close to the catalogue's `{other.id}` (“{other.title}”) but not the same; it was not added: correct the title in the paper or add the entry by hand",
                )
            )
            continue
        entry = _new_entry(row, taken)
        added.append(entry)
        by_title[key] = entry
    return CatalogueMatch(tuple(matched), tuple(added), tuple(warnings))


def _near(key: str, catalogue: Catalogue) -> Publication | None:
    """The catalogue entry whose title is close to `key` (a typo away), if any.

    Titles that differ in a number (a year, a phase) are different reports,
    however alike the rest of their words.
    """
    numbers = re.findall(r"\d+", key)
    for entry in catalogue.publications:
        title = comparable(entry.title)
        if re.findall(r"\d+", title) != numbers:
            continue
        if difflib.SequenceMatcher(None, key, title).ratio() >= NEAR:
            return entry
    return None


def _new_entry(row: TableRow, taken: set[str]) -> Publication:
    name = row.title.split(":")[0] if ":" in row.title else row.title
    attachments: tuple[Attachment, ...] = ()
    if row.attachment:
        words = row.attachment.removesuffix(" document").strip()
        attachments = (Attachment(slug(words) or "attachment", words[:1].upper() + words[1:]),)
    return Publication(
        id=unique(slug(name, limit=60) or "publication", taken),
        type=row.type,
        title=row.title,
        published=row.published,
        attachments=attachments,
    )


def _entry_map(entry: Publication) -> CommentedMap:
    mapping = CommentedMap()
    mapping["id"] = entry.id
    mapping["type"] = entry.type
    mapping["title"] = entry.title
    mapping["published"] = DoubleQuotedScalarString(entry.published)
    if entry.attachments:
        attachments = CommentedSeq()
        for attachment in entry.attachments:
            item = CommentedMap()
            item["id"] = attachment.id
            item["title"] = attachment.title
            attachments.append(item)
        mapping["attachments"] = attachments
    return mapping


def catalogue_with(path: Path, added: tuple[Publication, ...], source_name: str) -> str:
    """The catalogue file's text with the entries appended, everything else as it was."""
    text = path.read_text(encoding="utf-8") if path.exists() else "publications:\n"
    yaml = YAML()
    yaml.width = 4096
    yaml.preserve_quotes = True
    try:
        _, sequence, offset = load_yaml_guess_indent(text)
        data = yaml.load(text)
    except Exception as error:  # ruamel raises many kinds; any means we must not write
        raise BriefingError(f"{path}: cannot be read to add to it ({error})") from None
    # Write new entries the way the file already indents its lists ("  - id:" by default).
    sequence, offset = (sequence, offset or 0) if sequence else (4, 2)
    yaml.indent(mapping=2, sequence=sequence, offset=offset)
    if data is None:
        data = CommentedMap()
    publications: Any = data.get("publications") if isinstance(data, dict) else None
    if publications is None and isinstance(data, dict):
        publications = data["publications"] = CommentedSeq()
    if not isinstance(publications, CommentedSeq):
        raise BriefingError(f"{path}: `publications` is not a list; fix it, then import again")
    publications.fa.set_block_style()
    for number, entry in enumerate(added):
        publications.append(_entry_map(entry))
        if number == 0:
            publications.yaml_set_comment_before_after_key(
                len(publications) - 1,
                before=f"\nAdded by `newsletter import` from {source_name}:",
                indent=offset,
            )
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
