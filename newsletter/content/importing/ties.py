"""Tie each section and link of the paper to its catalogue publication, when that is certain.

A link belongs to a publication when it points at the publication's address,
or its words are the publication's title (or the part after the colon, as
GOV.UK page titles are: "Safeguarding children at risk from criminal
exploitation - GOV.UK"). A section belongs to a publication when its heading
is the title or the part before the colon ("The Myth of Invisible Men" for
"Myth of Invisible Men: ..."), or, failing that, when its links agree on one.
A heading that fits two publications (Phase 1 and Phase 2) is not guessed:
the links decide, or a warning asks a person to.
"""

from __future__ import annotations

import re

from newsletter.content.catalogue import Catalogue, Publication
from newsletter.content.importing.blocks import BriefingWarning
from newsletter.content.importing.briefing import DraftLink, DraftSection
from newsletter.content.importing.text import comparable

SITE_SUFFIX = re.compile(r"\s+-\s+gov\.uk(\s*\(www\.gov\.uk\))?$")


def _names(publication: Publication) -> set[str]:
    """The ways a paper names a publication: its title, and the parts either side of a colon."""
    title = comparable(publication.title)
    names = {title}
    if ":" in title:
        before, after = title.split(":", 1)
        names |= {before.strip(), after.strip()}
    return names | {name.removeprefix("the ") for name in names}


def _by_name(text: str, catalogue: Catalogue) -> list[Publication]:
    wanted = SITE_SUFFIX.sub("", comparable(text))
    wanted_forms = {wanted, wanted.removeprefix("the ")}
    return [p for p in catalogue.publications if _names(p) & wanted_forms]


def link_publication(link: DraftLink, catalogue: Catalogue) -> Publication | None:
    if link.url:
        by_url = [p for p in catalogue.publications if p.url == link.url]
        if len(by_url) == 1:
            return by_url[0]
    found = _by_name(link.text, catalogue)
    return found[0] if len(found) == 1 else None


def section_publication(
    section: DraftSection, link_ties: list[Publication | None], catalogue: Catalogue
) -> tuple[Publication | None, BriefingWarning | None]:
    """The section's publication, and a warning when its heading fits more than one."""
    candidates = _by_name(section.title, catalogue)
    if len(candidates) == 1:
        return candidates[0], None
    linked = list(dict.fromkeys(p for p in link_ties if p is not None))
    if candidates:
        linked = [p for p in linked if p in candidates]
    if len(linked) == 1:
        return linked[0], None
    if len(candidates) > 1:
        names = ", ".join(f"`{p.id}`" for p in candidates)
        return None, BriefingWarning(
            section.where,
            f"the section “{section.title}” could be any of the publications {names}; "
            "add `publication:` to the section by hand",
        )
    return None, None
