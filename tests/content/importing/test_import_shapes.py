"""Importing briefings of other shapes: Markdown, a hand-typed text export, and Word as
people really write it (bold headings, numbered "List Paragraph"s, typed bullets).

Each source's own lines are the expectation: every one must arrive in the issue
(the table's in the catalogue), and what fits nowhere must be named in a warning
with its place.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from newsletter.content.importing import ImportResult, import_briefing
from newsletter.core.project import open_project
from tests.content.importing.helpers import (
    FIXTURES,
    bullets,
    errors_of,
    issue_data,
    rendered_text,
    words,
)
from tests.content.importing.word import messy_docx

MARKER = re.compile(r"^\s*(?:[-•*]|o|#+|\d+[.)])\s+")


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


def assert_every_line_arrives(source: Path, result: ImportResult, date_line: str) -> None:
    """Each line of the source (bullet marks aside) is in the issue; table rows in the catalogue."""
    issue_words = " ".join(words(s) for s in all_strings(issue_data(result)))
    catalogue = [p.title for p in (*result.catalogue_added, *result.catalogue_matched)]
    lines = source.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.strip() == date_line:  # the date line becomes `date:`
            continue
        if ("\t" in line.strip() and not MARKER.match(line)) or line.startswith("|"):
            cells = [c.strip() for c in re.split(r"\t|\|", line) if c.strip(" -")]
            header = {"Type", "Title", "Title document"} & set(cells)
            assert header or not cells or cells[0] in catalogue or cells[1] in catalogue, line
            continue
        unmarked = MARKER.sub("", line).strip()
        whole_link = re.fullmatch(r"!?\[(.*)\]\((\S+)\)", unmarked)  # a link's words are its text
        expected = words(whole_link[1] if whole_link else unmarked)
        assert expected in issue_words, f"line {number} did not arrive: {line!r}"
        for url in re.findall(r"\]\((https://[^)]+)\)", line):
            assert url in result.issue_yaml, url


def line_of(path: Path, text: str) -> str:
    lines = path.read_text(encoding="utf-8").split("\n")
    return f"line {next(i for i, line in enumerate(lines, start=1) if text in line)}"


def test_a_markdown_briefing_with_other_headings_and_a_deep_list(project_dir: Path) -> None:
    source = FIXTURES / "learning-review-digest.md"
    result = import_briefing(open_project(project_dir), source)
    assert_every_line_arrives(source, result, "12 March 2024")
    data = issue_data(result)
    assert (data["title"], data["date"]) == ("Learning Review Digest", date(2024, 3, 12))
    assert "recent reviews teach us" in data["intro"]
    neglect, _, protection = data["sections"]
    assert neglect["prompts_heading"] == "For discussion at team meetings"
    deep = bullets(neglect["points"])[0][1][0]
    assert deep == ("Training offered to:", [("health visitors", []), ("early years settings", [])])
    assert neglect["links"] == [
        {
            "heading": "Links to documents",
            "text": "Neglect Strategy 2024 (summary for practitioners)",
            "url": "https://www.example.org/neglect-strategy-2024",
        }
    ]  # a link to no catalogue publication keeps its address and stays a link
    assert protection["publication"] == "child-protection-in-england"
    assert [(p.type, p.published) for p in result.catalogue_added] == [("Guidance", "2024-02")]
    places = {w.where: w.message for w in result.warnings}
    assert "Partnership news" in places[line_of(source, "Our annual conference")]
    assert "image" in places[line_of(source, "![Photograph")]
    assert "kept in the intro" in places[line_of(source, "![The partnership")]
    assert "The partnership's logo" in data["intro"]
    assert errors_of(project_dir, result.issue_path) == []
    text, _ = rendered_text(project_dir, result.issue_id)
    assert "early years settings" in text and "Our annual conference is on 14 May" in text


def test_a_text_export_with_typed_bullets_smart_quotes_and_news_between_sections(
    project_dir: Path,
) -> None:
    source = FIXTURES / "practice-spotlight-autumn.txt"
    result = import_briefing(open_project(project_dir), source, issue_id="2024-10-spotlight")
    assert_every_line_arrives(source, result, "October 2024")
    data = issue_data(result)
    assert (data["title"], data["date"]) == ("Practice Spotlight", date(2024, 10, 1))
    online, families = data["sections"]
    assert online["lead_in"] == "Messages for practice from this briefing were:"  # no NBSP left
    assert online["prompts_heading"] == "For information and discussion"
    points = bullets(online["points"])
    assert points[0][0] == "Children’s “online lives” are part of their real lives"
    assert points[1][1][0] == (
        "including the chat inside games",
        [("and private messages between players", [])],
    )
    added = {p.title: p for p in result.catalogue_added}
    online_harm = added["Safeguarding children at risk from online harm"]
    assert (online_harm.type, online_harm.published) == ("Panel briefing", "2024-08")
    assert online["publication"] == online_harm.id
    assert [p.id for p in result.catalogue_matched] == [
        "supporting-vulnerable-children-during-covid-19"
    ]
    assert [words(text) for text, _ in bullets(families["points"])] == [
        "Families who lost touch with services",
        "Children who missed health checks and immunisations in 2020 and 2021",  # wrapped
    ]
    assert families["links"][0] == {
        "heading": "Useful link",
        "text": "Local family support directory",
        "url": "https://www.example.org/family-support",
    }
    news = line_of(source, "The training calendar for 2025")
    assert [w.where for w in result.warnings] == [news]
    assert errors_of(project_dir, result.issue_path) == []


def test_word_as_people_really_write_it(project_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "briefing.docx"
    places = messy_docx(source)
    result = import_briefing(open_project(project_dir), source)
    data = issue_data(result)
    assert data["title"] == "Partnership Briefing" and data["date"] == date(2024, 6, 1)
    assert result.issue_id == "2024-06-partnership-briefing"
    assert words(data["intro"]) == (
        "A short round-up for practitioners. Please share it with your teams."
    )
    abuse, neglect = data["sections"]
    assert abuse["title"] == "Domestic abuse and young people"
    assert abuse["lead_in"] == "Key messages from the review were:"
    comment, *points = bullets(abuse["points"])
    assert comment == ("Comment by Sam Patel: Check this wording with Jo", [])  # where it stood
    assert points[0] == (
        "Young people can be victims in their own relationships",
        [("Including control through their phones", [("such as sharing their location", [])])],
    )
    assert points[1] == ("Schools often see the first signs", [])
    assert points[2][0] == (
        "Use the [relationships toolkit](https://www.example.org/relationships-toolkit) "
        "in every school"
    )
    assert points[3] == ("Guidance pasted from a PDF keeps its Symbol-font bullet", [])
    assert abuse["prompts_heading"] == "For information and consideration"
    assert abuse["prompts"] == ["How do we ask young people about relationships?"]
    assert abuse["links"] == [
        {
            "heading": "Link to document",
            "text": "Domestic abuse toolkit",
            "url": "https://www.example.org/da-toolkit",
        }
    ]
    assert bullets(neglect["points"]) == [("Neglect often went unseen for months", [])]
    warned = {w.where: w.message for w in result.warnings}
    assert "comment" in warned[f"paragraph {places['comment']}"].casefold()
    assert "image" in warned[f"paragraph {places['image']}"]
    assert "table" in warned["table 1"]
    kept = " ".join(words(s) for s in all_strings(abuse["points"]))
    for lost_if_missing in (
        "Check this wording with Jo",
        "Chart of referrals by age",
        "Briefing session",
    ):
        assert lost_if_missing in kept
    assert errors_of(project_dir, result.issue_path) == []


@pytest.mark.parametrize(
    "source",
    [FIXTURES / "learning-review-digest.md", FIXTURES / "practice-spotlight-autumn.txt"],
    ids=["markdown", "text"],
)
def test_each_fixture_imports_the_same_way_every_time(project_dir: Path, source: Path) -> None:
    first = import_briefing(open_project(project_dir), source, dry_run=True)
    second = import_briefing(open_project(project_dir), source, dry_run=True)
    assert (first.issue_yaml, first.warnings) == (second.issue_yaml, second.warnings)
