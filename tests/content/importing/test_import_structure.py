"""Papers that bend the usual structure: each bend is kept, warned about with its line,
and the draft still passes `validate`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from newsletter.content.importing import import_briefing
from newsletter.core.project import open_project
from tests.content.importing.helpers import bullets, errors_of, issue_data

PAPER = """\
# Bent Briefing

## First report

What we found:

- One finding

For information and consideration

- Have we done this?
  - And this?

## A heading with nothing under it

## Second report

Everything we ask is below:

For information and consideration

- Is there more we can do?
"""


def test_bends_in_the_structure_are_kept_and_named(project_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "bent.md"
    source.write_text(PAPER, encoding="utf-8")
    result = import_briefing(open_project(project_dir), source, today=date(2024, 2, 29))
    data = issue_data(result)
    warned = {w.where: w.message for w in result.warnings}

    assert data["date"] == date(2024, 2, 29)  # no date line: the day of the import
    assert "no date line" in warned["the start"]

    first, second = data["sections"]
    assert first["prompts"] == ["Have we done this?", "And this?"]
    assert "nested prompt" in warned["line 12"]
    assert bullets(first["points"])[-1] == ("**A heading with nothing under it**", [])
    assert "nothing under it" in warned["line 14"]

    assert "lead_in" not in second
    assert bullets(second["points"]) == [("Everything we ask is below:", [])]
    assert "lead-in but no bullets" in warned["line 18"]
    assert second["prompts"] == ["Is there more we can do?"]
    assert errors_of(project_dir, result.issue_path) == []


def test_bullets_nested_absurdly_deep_are_kept_at_a_readable_depth(
    project_dir: Path, tmp_path: Path
) -> None:
    deep = "\n".join(f"{' ' * level}- level {level + 1}" for level in range(300))
    source = tmp_path / "deep.txt"
    source.write_text(f"Deep Briefing\nMay 2024\n\nA report\n\nWhat we found:\n\n{deep}\n", "utf-8")
    result = import_briefing(open_project(project_dir), source)
    points = bullets(issue_data(result)["sections"][0]["points"])
    depth, level = 0, points
    while level:
        depth += 1
        *_, (_, level) = level
    assert depth == 6
    kept = " ".join(str(point) for point in points)
    assert all(f"'level {n}'" in kept for n in range(1, 301))
    assert len(result.warnings) == 300 - 6
    assert errors_of(project_dir, result.issue_path) == []


def test_every_warning_also_heads_the_issue_file(project_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "bent.md"
    source.write_text(PAPER, encoding="utf-8")
    result = import_briefing(open_project(project_dir), source, today=date(2024, 2, 29))
    header = result.issue_yaml.split("\nid: ", 1)[0]
    assert result.warnings
    for warning in result.warnings:
        assert f"#   - {warning}" in header
