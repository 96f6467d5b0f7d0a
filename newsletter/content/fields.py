"""The field reader content files share: ids, Markdown with safe links, and URLs."""

from __future__ import annotations

import re
from typing import Any

from newsletter.content.markup import markdown_links
from newsletter.core.checks import link_problem
from newsletter.core.fields import FieldReader
from newsletter.core.yamlfile import KeyPath

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def markdown_link_problems(text: str) -> list[str]:
    """Why each link written inside Markdown text is unsafe (the renderer would drop it)."""
    # A template chooses whether a field is read inline or as blocks (a
    # project's own templates may choose either), and only blocks define
    # `[words][ref]` references, so check the links of both readings.
    targets = dict.fromkeys([*markdown_links(text), *markdown_links(text, block=True)])
    return [why for target in targets if (why := link_problem(target))]


class ContentFields(FieldReader):
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


def optional_url(fields: ContentFields, mapping: dict[str, Any], key_path: KeyPath) -> str | None:
    """The URL at `key_path`, checked as safe to link to; None when absent or unsafe."""
    value = mapping.get(str(key_path[-1]))
    if value is None:
        return None
    if why := link_problem(value):
        fields.error(key_path, why)
        return None
    return str(value).strip()
