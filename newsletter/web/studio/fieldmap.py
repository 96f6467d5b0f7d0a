"""Which form field holds a given line of an issue file, to put each problem next to its field.

`validate` locates a problem by file, line and column; the studio shows it
above the input holding that part of the file. The file is composed (not
loaded) with PyYAML's C parser, which is fast enough to run on every
keystroke's check and gives each key's line.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

# The top-level keys the form shows, by the field that shows them; other keys have no field.
TOP_FIELDS = {
    "title": "title",
    "subject": "subject",
    "preheader": "preheader",
    "date": "date",
    "send_at": "send_date",
    "audience": "audience",
    "intro": "intro",
    "sections": "add-section",
}
SECTION_FIELDS = {
    "id": "title",
    "title": "title",
    "publication": "publication",
    "lead_in": "lead_in",
    "points": "points",
    "prompts_heading": "prompts_heading",
    "prompts": "prompts",
    "audience": "audience",
    "links": "links",
    "themes": "title",
}
LINK_FIELDS = {"heading": "heading", "text": "text", "url": "url", "publication": "publication"}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FieldLine = tuple[int, str | None]


def _pairs(node: yaml.Node) -> list[tuple[str, int, yaml.Node]]:
    """(key, first line, value) for each entry of a mapping node."""
    if not isinstance(node, yaml.MappingNode):
        return []
    return [
        (str(key.value), key.start_mark.line + 1, value)
        for key, value in node.value
        if isinstance(key, yaml.ScalarNode)
    ]


def _link_lines(links: yaml.Node, prefix: str) -> list[FieldLine]:
    found: list[FieldLine] = []
    if isinstance(links, yaml.SequenceNode):
        for j, link in enumerate(links.value):
            for key, line, _ in _pairs(link):
                found.append((line, f"{prefix}links-{j}-{LINK_FIELDS.get(key, 'text')}"))
    return found


def _section_lines(section: yaml.Node, index: int) -> list[FieldLine]:
    prefix = f"sections-{index}-"
    found: list[FieldLine] = [(section.start_mark.line + 1, f"{prefix}title")]
    for key, line, value in _pairs(section):
        name = SECTION_FIELDS.get(key)
        found.append((line, f"{prefix}{name}" if name else f"{prefix}title"))
        if key == "links":
            found += _link_lines(value, prefix)
    return found


def field_lines(text: str) -> list[FieldLine]:
    """(first line, form field or None) for each part of the issue file, in line order."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        return []
    found: list[FieldLine] = []
    for key, line, value in _pairs(root) if root is not None else []:
        found.append((line, TOP_FIELDS.get(key)))
        if key == "sections" and isinstance(value, yaml.SequenceNode):
            for index, section in enumerate(value.value):
                found += _section_lines(section, index)
    return sorted(found, key=lambda item: item[0])


def field_at(lines: Sequence[FieldLine], line: int) -> str | None:
    """The form field whose part of the file holds `line` (None: a part the form does not show)."""
    chosen = None
    for start, name in lines:
        if start > line:
            break
        chosen = name
    return chosen
