"""The form <-> YAML mapping without a browser: a save is a careful person's edit of the file.

The issue files are hand-edited and reviewed in git too, so the studio must
change only the values that changed, keeping comments, key order, quoting
and everything the form does not show (themes, attachments).
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from newsletter.content.issue import read_issue
from newsletter.core.project import open_project
from newsletter.web.studio.fieldmap import field_at, field_lines
from newsletter.web.studio.issue_form import (
    LinkForm,
    PointForm,
    SectionForm,
    points_from_text,
    points_to_text,
)
from newsletter.web.studio.roundtrip import edited_text, read_form
from tests.support.project import SAMPLE_ISSUE

ZONE = ZoneInfo("Europe/London")


def _sample(project_dir: Path) -> str:
    return (project_dir / "issues" / f"{SAMPLE_ISSUE}.yaml").read_text(encoding="utf-8")


def _changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0, lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_saving_the_form_unchanged_writes_the_file_byte_for_byte(project_dir: Path) -> None:
    text = _sample(project_dir)
    assert edited_text(text, read_form(text, ZONE), ZONE) == text


def test_a_changed_title_and_bullet_change_only_those_lines(project_dir: Path) -> None:
    text = _sample(project_dir)
    form = read_form(text, ZONE)
    first = form.sections[0]
    points = (PointForm("Responding to critical moments"), *first.points[1:])
    form = dataclasses.replace(
        form,
        title="Panel reports, revisited",
        sections=(dataclasses.replace(first, points=points), *form.sections[1:]),
    )
    after = edited_text(text, form, ZONE)
    assert _changed_lines(text, after) == [
        "-title: Reports from the Child Safeguarding Practice Review Panel",
        "+title: Panel reports, revisited",
        "-      - Responding to reachable/critical moments in children's lives",
        "+      - Responding to critical moments",
    ]
    # The comments at the top, and the quoting of untouched values, are as they were.
    assert after.startswith("# First issue:")
    assert 'subject: "News Update, May 2023' in after


def test_moving_and_removing_sections_keeps_their_keys_and_comments(project_dir: Path) -> None:
    path = project_dir / "issues" / f"{SAMPLE_ISSUE}.yaml"
    text = _sample(project_dir).replace(
        "  - id: out-of-routine\n",
        "  # Safer sleep: keep this one near the top.\n  - id: out-of-routine\n",
    )
    form = read_form(text, ZONE)
    sections = list(form.sections)
    sections[0], sections[1] = sections[1], sections[0]
    removed = sections.pop(3)
    after = edited_text(text, dataclasses.replace(form, sections=tuple(sections)), ZONE)
    data = yaml.safe_load(after)
    ids = [s["id"] for s in data["sections"]]
    assert ids[:2] == ["out-of-routine", "it-was-hard-to-escape"]
    assert removed.id not in ids
    moved = data["sections"][0]
    assert moved["themes"] == ["babies-under-one", "safer-sleep", "multi-agency-working"]
    assert "# Safer sleep: keep this one near the top." in after
    path.write_text(after, encoding="utf-8")
    project = open_project(project_dir)
    issue, problems = read_issue(
        path, project.catalogue(), project.audience_source().segments.keys(), ZONE
    )
    assert issue is not None, problems
    assert [s.id for s in issue.sections] == ids


def test_a_new_section_with_a_publication_nested_bullets_and_a_catalogue_link(
    project_dir: Path,
) -> None:
    text = _sample(project_dir)
    form = read_form(text, ZONE)
    points = points_from_text("- Top point\n  - under it\n  - and another\n- Second point")
    new = SectionForm(
        title="Working Together 2023",
        publication="practice-guidance",
        lead_in="What changes:",
        points=points,
        prompts_heading="For information",
        prompts=("Are we ready?",),
        audience=("health", "police"),
        links=(
            LinkForm(
                heading="Link to document", text="The guidance", publication="practice-guidance"
            ),
        ),
    )
    after = edited_text(text, dataclasses.replace(form, sections=(*form.sections, new)), ZONE)
    added = yaml.safe_load(after)["sections"][-1]
    assert added == {
        "id": "working-together-2023",
        "title": "Working Together 2023",
        "publication": "practice-guidance",
        "audience": ["health", "police"],
        "lead_in": "What changes:",
        "points": [{"text": "Top point", "points": ["under it", "and another"]}, "Second point"],
        "prompts_heading": "For information",
        "prompts": ["Are we ready?"],
        "links": [
            {
                "heading": "Link to document",
                "text": "The guidance",
                "publication": "practice-guidance",
            }
        ],
    }
    assert "  audience: [health, police]" in after.replace("    audience", "  audience")


def test_bullets_round_trip_through_the_textarea() -> None:
    points = (PointForm("One", ("a", "b")), PointForm("Two"))
    assert points_to_text(points) == "- One\n  - a\n  - b\n- Two"
    assert points_from_text(points_to_text(points)) == points
    assert points_from_text("* star\r\n\r\n    - deep\n• dot") == (
        PointForm("star", ("deep",)),
        PointForm("dot"),
    )


def test_a_removed_link_goes_and_the_others_keep_their_attachment(project_dir: Path) -> None:
    text = _sample(project_dir)
    form = read_form(text, ZONE)
    index = next(
        i
        for i, s in enumerate(form.sections)
        if s.id == "multi-agency-safeguarding-and-domestic-abuse"
    )
    section = form.sections[index]
    sections = list(form.sections)
    sections[index] = dataclasses.replace(section, links=section.links[1:])
    after = edited_text(text, dataclasses.replace(form, sections=tuple(sections)), ZONE)
    links = yaml.safe_load(after)["sections"][index]["links"]
    assert len(links) == 1
    assert links[0]["text"] == "Associated briefing (Microsoft Word document)"
    assert links[0]["attachment"] == "associated-briefing"


def test_the_send_time_is_read_and_written_in_the_project_time_zone(project_dir: Path) -> None:
    text = _sample(project_dir)
    form = read_form(text, ZONE)
    assert (form.send_date, form.send_time) == ("2023-05-15", "09:00")
    winter = dataclasses.replace(form, send_date="2023-12-01", send_time="10:30")
    after = edited_text(text, winter, ZONE)
    assert 'send_at: "2023-12-01T10:30:00+00:00"' in after
    unscheduled = edited_text(text, dataclasses.replace(form, send_date="", send_time=""), ZONE)
    assert "send_at" not in yaml.safe_load(unscheduled)


def test_a_line_of_the_file_maps_to_the_field_that_holds_it(project_dir: Path) -> None:
    text = _sample(project_dir)
    lines = field_lines(text)
    numbered = text.splitlines()
    title_line = (
        numbered.index("title: Reports from the Child Safeguarding Practice Review Panel") + 1
    )
    bullet_line = (
        numbered.index("      - Families being engaged in the joint protection of their children")
        + 1
    )
    url_line = next(i for i, line in enumerate(numbered, 1) if line.strip().startswith("url:"))
    assert field_at(lines, title_line) == "title"
    assert field_at(lines, bullet_line) == "sections-0-points"
    assert field_at(lines, url_line) == "sections-0-links-0-url"
    reply_line = numbered.index("reply_to: ideas@example.org") + 1
    assert field_at(lines, reply_line) is None  # not on the form: shown in the summary only
