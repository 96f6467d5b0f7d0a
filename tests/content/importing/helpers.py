"""Shared pieces of the import tests: reading an imported issue back, and rendering it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from newsletter.audience.lists import variant_for
from newsletter.content.importing import ImportResult
from newsletter.content.markup import markdown_plain
from newsletter.core.project import open_project
from newsletter.render.variants import Renderer
from newsletter.review.validate import validate_project

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "briefings"


def words(text: str) -> str:
    """Plain words with single spaces, as a reader of the email sees them."""
    return " ".join(markdown_plain(text).split())


def issue_data(result: ImportResult) -> dict[str, Any]:
    data = yaml.safe_load(result.issue_yaml)
    assert isinstance(data, dict)
    return data


def bullets(items: list[Any]) -> list[tuple[str, list[Any]]]:
    """Points as (text, children) pairs, however deep."""
    out: list[tuple[str, list[Any]]] = []
    for item in items:
        if isinstance(item, str):
            out.append((item, []))
        else:
            out.append((item["text"], bullets(item.get("points", []))))
    return out


def errors_of(root: Path, path: Path) -> list[str]:
    """What `newsletter validate` reports as errors for the imported issue."""
    return [str(p) for p in validate_project(root, [path]) if p.is_error]


def rendered_text(root: Path, issue_id: str) -> tuple[str, str]:
    """The email's plain-text part (words only) and HTML, every section included."""
    project = open_project(root)
    issue = project.load_issue(issue_id)
    variant = variant_for(issue, tuple(s.id for s in issue.sections))
    rendered = Renderer(project, issue).variant(variant)
    return " ".join(rendered.text.split()), rendered.html


def kept_as_bullet(result: ImportResult, section_title: str) -> list[str]:
    """The warnings saying something was kept as a bullet of this section."""
    return [
        str(w)
        for w in result.warnings
        if f"kept as a bullet in the section “{section_title}”" in w.message
    ]
