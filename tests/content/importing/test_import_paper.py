"""Importing the May 2023 paper, as the team's .txt export and as a Word .docx built from it.

What the paper holds is read by the seed-fidelity parser (tests/content/
test_seed_fidelity.py), which knows nothing of the importer: every bullet,
prompt and link it finds must arrive, in order, and render.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from newsletter.content.importing import import_briefing
from newsletter.content.new_issue import new_issue
from newsletter.core.errors import NewsletterError
from newsletter.core.project import open_project
from tests.content.importing.helpers import (
    bullets,
    errors_of,
    issue_data,
    kept_as_bullet,
    rendered_text,
    words,
)
from tests.content.importing.word import may_2023_docx
from tests.content.test_seed_fidelity import PAPER, paper_sections, paper_table
from tests.support.project import SAMPLE_ISSUE, unapprove_sample

NEW_ID = "2023-05-imported"


@pytest.fixture(params=["txt", "docx"])
def paper(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "txt":
        return shutil.copy(PAPER, tmp_path / PAPER.name)
    return may_2023_docx(tmp_path / "panel-reports-may-2023.docx")


def test_every_bullet_prompt_and_link_of_the_paper_arrives_in_order(
    project_dir: Path, paper: Path
) -> None:
    result = import_briefing(open_project(project_dir), paper, issue_id=NEW_ID)
    assert result.written and result.issue_path == project_dir / "issues" / f"{NEW_ID}.yaml"
    data = yaml.safe_load(result.issue_path.read_text(encoding="utf-8"))
    assert data["title"] == "Reports from the Child Safeguarding Practice Review Panel"
    assert str(data["date"]).startswith("2023-05")
    assert "send_at" not in data and "approved" not in data

    expected = paper_sections()
    assert [s["title"] for s in data["sections"]] == [s["title"] for s in expected]
    for got, want in zip(data["sections"], expected, strict=True):
        assert got["lead_in"] == want["lead_in"]
        points = bullets(got["points"])
        want_points = [(text, [(child, []) for child in kids]) for text, kids in want["points"]]
        assert points[: len(want_points)] == want_points, got["title"]
        assert got["prompts_heading"] == want["prompts_heading"]
        assert got["prompts"] == [text for text, _ in want["prompts"]]
        written = [
            (link.get("heading"), link["text"], link.get("url")) for link in got.get("links", [])
        ]
        wanted = [(link["heading"], link["text"], link["url"]) for link in want["links"]]
        assert written == [link for link in wanted if link in written], "links out of order"
        extra_bullets = [words(text) for text, _ in points[len(want_points) :]]
        for heading, _, _ in (link for link in wanted if link not in written):
            # A link the issue cannot hold (no address, no catalogue entry) stays as words.
            assert any(bullet.startswith(f"{heading}:") for bullet in extra_bullets), heading
        # Nothing was added in silence: each extra bullet has its warning.
        assert len(kept_as_bullet(result, got["title"])) == len(extra_bullets), got["title"]


def test_the_imported_issue_validates_and_renders_every_bullet_prompt_and_link(
    project_dir: Path, paper: Path
) -> None:
    result = import_briefing(open_project(project_dir), paper, issue_id=NEW_ID)
    assert errors_of(project_dir, result.issue_path) == []
    text, html = rendered_text(project_dir, NEW_ID)
    for section in paper_sections():
        expected = [section["title"], section["lead_in"], section["prompts_heading"]]
        for point, children in section["points"]:
            expected += [point, *children]
        expected += [prompt for prompt, _ in section["prompts"]]
        for piece in expected:
            assert words(piece) in text, piece
        for link in section["links"]:
            assert words(link["text"]) in text or link["text"].endswith("document)")
            if link["url"]:
                assert f'href="{link["url"]}"' in html


def test_the_catalogue_gets_each_publication_with_its_type_and_date(
    project_dir: Path, paper: Path
) -> None:
    (project_dir / "issues" / f"{SAMPLE_ISSUE}.yaml").unlink()
    unapprove_sample(project_dir)
    catalogue = project_dir / "issues" / "publications.yaml"
    catalogue.write_text("# The team keeps this list by hand.\npublications: []\n", "utf-8")

    result = import_briefing(open_project(project_dir), paper, issue_id=NEW_ID)

    text = catalogue.read_text(encoding="utf-8")
    assert text.startswith("# The team keeps this list by hand.\n")
    entries = yaml.safe_load(text)["publications"]
    rows = paper_table()
    assert [(e["title"], e["type"], e["published"]) for e in entries] == [
        (r["title"], r["type"], r["published"]) for r in rows
    ]
    for entry, row in zip(entries, rows, strict=True):
        assert bool(entry.get("attachments")) == bool(row["note"]), entry["title"]
    assert [p.id for p in result.catalogue_added] == [e["id"] for e in entries]
    assert result.catalogue_matched == ()
    assert errors_of(project_dir, result.issue_path) == []
    # Sections are tied to the report their heading names.
    by_id = {e["id"]: e["title"] for e in entries}
    for section in issue_data(result)["sections"]:
        if "publication" in section:
            title = by_id[section["publication"]].casefold()
            assert title.startswith(section["title"].casefold().removeprefix("the "))


def test_publications_already_in_the_catalogue_are_matched_never_added_twice(
    project_dir: Path, paper: Path
) -> None:
    catalogue = project_dir / "issues" / "publications.yaml"
    before = catalogue.read_bytes()
    result = import_briefing(open_project(project_dir), paper, issue_id=NEW_ID)
    assert catalogue.read_bytes() == before
    assert result.catalogue_added == ()
    assert sorted(p.title for p in result.catalogue_matched) == sorted(
        r["title"] for r in paper_table()
    )


def test_a_title_close_to_a_catalogue_entry_is_reported_with_its_line_not_guessed(
    project_dir: Path, tmp_path: Path
) -> None:
    original = "Panel briefing\tBruising in non-mobile infants\tSeptember 2022"
    text = PAPER.read_text(encoding="utf-8")
    assert original in text
    line = text[: text.index(original)].count("\n") + 1
    paper = tmp_path / "paper.txt"
    paper.write_text(text.replace(original, original.replace("non-mobile", "non mobile")), "utf-8")
    catalogue = project_dir / "issues" / "publications.yaml"
    before = catalogue.read_bytes()

    result = import_briefing(open_project(project_dir), paper, issue_id=NEW_ID)

    lines = text.split("\n")
    table_start = line
    while "\t" in lines[table_start - 2]:
        table_start -= 1
    near = [w for w in result.warnings if "bruising-in-non-mobile-infants" in w.message]
    assert [w.where for w in near] == [f"line {table_start}, row {line - table_start + 1}"]
    assert near and "not added" in near[0].message
    assert catalogue.read_bytes() == before


def test_the_same_paper_always_gives_the_same_issue(project_dir: Path, paper: Path) -> None:
    project = open_project(project_dir)
    first = import_briefing(project, paper, dry_run=True)
    second = import_briefing(project, paper, dry_run=True)
    assert first.issue_yaml == second.issue_yaml
    assert first.warnings == second.warnings
    assert first.issue_id == "2023-05-reports-from-the-child-safeguarding"


def test_a_dry_run_writes_nothing(project_dir: Path, paper: Path) -> None:
    before = sorted((p, p.read_bytes()) for p in (project_dir / "issues").rglob("*") if p.is_file())
    result = import_briefing(open_project(project_dir), paper, issue_id=NEW_ID, dry_run=True)
    after = sorted((p, p.read_bytes()) for p in (project_dir / "issues").rglob("*") if p.is_file())
    assert after == before
    assert not result.written and not result.issue_path.exists()
    assert issue_data(result)["id"] == NEW_ID


def test_an_existing_issue_is_never_overwritten(project_dir: Path) -> None:
    target = project_dir / "issues" / f"{SAMPLE_ISSUE}.yaml"
    before = target.read_bytes()
    with pytest.raises(NewsletterError, match="already exists"):
        import_briefing(open_project(project_dir), PAPER, issue_id=SAMPLE_ISSUE)
    assert target.read_bytes() == before


def test_audience_and_reply_to_come_from_from_or_the_most_recent_issue(
    project_dir: Path,
) -> None:
    project = open_project(project_dir)
    later = new_issue(project, "2023-08-news-update", SAMPLE_ISSUE)
    text = later.read_text(encoding="utf-8").replace(
        "reply_to: ideas@example.org", "reply_to: august@example.org"
    )
    later.write_text(text, encoding="utf-8")

    latest = import_briefing(open_project(project_dir), PAPER, dry_run=True)
    assert issue_data(latest)["reply_to"] == "august@example.org"
    chosen = import_briefing(
        open_project(project_dir), PAPER, from_issue=SAMPLE_ISSUE, dry_run=True
    )
    assert issue_data(chosen)["reply_to"] == "ideas@example.org"
    assert issue_data(chosen)["audience"] == ["all-practitioners"]
