"""`newsletter new`: a fresh issue file, or one started from an earlier issue."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.content.new_issue import new_issue, outdated_dates
from newsletter.core.errors import NewsletterError, Problem
from newsletter.core.project import Project, open_project
from newsletter.review.approval import approve_issue, check_approval
from newsletter.review.validate import validate_project

EARLIER = "2023-05-panel-reports"
AUGUST = date(2023, 8, 1)
LONDON = ZoneInfo("Europe/London")  # the sample's time zone, in which "today" is read


def read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def errors_in(project_dir: Path, path: Path) -> list[Problem]:
    """What `validate` reports as errors for one issue file (a new issue is unscheduled)."""
    return [p for p in validate_project(project_dir, [path]) if p.is_error]


def test_new_from_an_earlier_issue_copies_it_with_a_new_identity(
    project: Project, project_dir: Path
) -> None:
    earlier_path = project_dir / "issues" / f"{EARLIER}.yaml"
    path = new_issue(project, "2023-08-news-update", EARLIER, today=AUGUST)
    assert path == project_dir / "issues" / "2023-08-news-update.yaml"

    earlier, fresh = read(earlier_path), read(path)
    assert fresh["id"] == "2023-08-news-update"
    assert fresh["date"] == AUGUST
    assert "send_at" not in fresh and "approved" not in fresh
    assert fresh["sections"] == earlier["sections"]
    for name in ("title", "subject", "preheader", "audience", "reply_to", "intro"):
        assert fresh[name] == earlier[name], name
    assert errors_in(project_dir, path) == []


def test_the_copy_keeps_comments_and_block_text_as_written(
    project: Project, project_dir: Path
) -> None:
    earlier_path = project_dir / "issues" / f"{EARLIER}.yaml"
    text = earlier_path.read_text("utf-8")
    text = text.replace("sections:\n", "# The reports, newest first.\nsections:\n", 1)
    text = text.replace(
        "  - id: out-of-routine\n",
        "  # check this one with health colleagues\n  - id: out-of-routine\n",
    )
    earlier_path.write_text(text, "utf-8")
    written = new_issue(project, "2023-08-news", EARLIER, today=AUGUST).read_text("utf-8")
    assert "# The reports, newest first.\nsections:\n" in written
    assert "  # check this one with health colleagues\n  - id: out-of-routine\n" in written
    intro = re.search(r"(?ms)^intro: \|\n.*?(?=^\S)", text)
    assert intro is not None and intro.group(0) in written
    # The earlier issue's opening comment is about that issue, not this one.
    assert "First issue: the May 2023 paper" not in written


def test_an_earlier_issue_written_in_flow_style_is_copied_by_value(
    project: Project, project_dir: Path
) -> None:
    earlier = read(project_dir / "issues" / f"{EARLIER}.yaml")
    flow = project_dir / "issues" / "2023-06-flow.yaml"
    flow.write_text(yaml.safe_dump({**earlier, "id": "2023-06-flow"}, default_flow_style=True))
    path = new_issue(project, "2023-08-news", "2023-06-flow", today=AUGUST)
    assert read(path)["sections"] == earlier["sections"]
    assert "send_at" not in read(path)


def test_a_fresh_issue_is_a_valid_skeleton(project: Project, project_dir: Path) -> None:
    path = new_issue(project, "2023-08-news", today=AUGUST)
    fresh = read(path)
    assert fresh["id"] == "2023-08-news"
    assert fresh["date"] == AUGUST
    assert fresh["subject"] == "News Update, August 2023"
    assert fresh["audience"] == ["all-practitioners"]
    assert fresh["reply_to"] == project.settings.reply_to
    assert "send_at" not in fresh and "approved" not in fresh
    assert errors_in(project_dir, path) == []


def test_a_new_issue_is_not_approved_even_if_the_earlier_one_was(
    project: Project, project_dir: Path
) -> None:
    earlier_path = project_dir / "issues" / f"{EARLIER}.yaml"
    earlier_path.write_text(
        earlier_path.read_text("utf-8").replace("approved: false", "approved: true"), "utf-8"
    )
    approve_issue(project, EARLIER, "Jo Bloggs")
    new_issue(project, "2023-08-news", EARLIER, today=AUGUST)
    assert check_approval(project, EARLIER).approved
    status = check_approval(project, "2023-08-news")
    assert not status.approved and not status.legacy and not status.earlier


@pytest.mark.parametrize(
    ("new_id", "message"),
    [
        ("August News", "cannot be an issue id: use lower-case letters, digits and hyphens"),
        ("2023-08-news.yaml", "cannot be an issue id"),
        ("../escape", "cannot be an issue id"),
        (EARLIER, "already exists; choose another id"),
    ],
)
def test_refuses_an_id_that_cannot_be_a_new_file(
    project: Project, project_dir: Path, new_id: str, message: str
) -> None:
    before = sorted(p.name for p in (project_dir / "issues").iterdir())
    with pytest.raises(NewsletterError, match=re.escape(message)):
        new_issue(project, new_id, EARLIER, today=AUGUST)
    assert sorted(p.name for p in (project_dir / "issues").iterdir()) == before


def test_refuses_an_id_another_file_already_has(project: Project, project_dir: Path) -> None:
    other = project_dir / "issues" / "may-copy.yaml"
    other.write_text((project_dir / "issues" / f"{EARLIER}.yaml").read_text("utf-8"), "utf-8")
    existing = project_dir / "issues" / f"{EARLIER}.yaml"
    existing.rename(project_dir / "issues" / "may.yaml")
    with pytest.raises(NewsletterError, match=f"already has the id `{EARLIER}`"):
        new_issue(project, EARLIER, today=AUGUST)
    assert not existing.exists()


def test_the_new_command(project_dir: Path) -> None:
    runner = CliRunner()
    before = datetime.now(LONDON).date()
    result = runner.invoke(
        cli, ["--root", str(project_dir), "new", "2023-08-news", "--from", EARLIER]
    )
    after = datetime.now(LONDON).date()
    assert result.exit_code == 0, result.output
    path = project_dir / "issues" / "2023-08-news.yaml"
    assert f"created {path}" in result.output
    assert "newsletter approve 2023-08-news --by NAME" in result.output
    assert read(path)["date"] in {before, after}

    again = runner.invoke(cli, ["--root", str(project_dir), "new", "2023-08-news"])
    assert again.exit_code == 1
    assert again.output.strip() == (
        f"newsletter: {path} already exists; choose another id, or edit that file instead"
    )


def test_the_new_command_names_a_missing_earlier_issue(project_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "new", "2023-08-news", "--from", "2022-01-nothing"]
    )
    assert result.exit_code == 1
    assert "no issue `2022-01-nothing`" in result.output
    assert not (project_dir / "issues" / "2023-08-news.yaml").exists()


def test_a_new_issue_can_be_scheduled_and_approved(project_dir: Path) -> None:
    """The path a comms officer takes: new, write, schedule, approve."""
    project = open_project(project_dir)
    path = new_issue(project, "2023-08-news", EARLIER, today=AUGUST)
    text = path.read_text("utf-8")
    path.write_text(text + 'send_at: "2023-08-15T09:00:00+01:00"\n', "utf-8")
    assert [p for p in validate_project(project_dir, [path]) if p.is_error] == []
    approve_issue(project, "2023-08-news", "Jo Bloggs")
    assert check_approval(project, "2023-08-news").approved


def test_new_from_warns_about_last_issues_month_and_year_in_the_words_people_see(
    project_dir: Path,
) -> None:
    # The sample is May 2023; a copy dated December 2026 keeps its words until rewritten.
    project = open_project(project_dir)
    path = new_issue(project, "2026-12-news", EARLIER, today=date(2026, 12, 7))
    subject_line = next(
        n
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.startswith("subject:")
    )
    warnings = [str(p) for p in outdated_dates(path)]
    assert warnings == [
        f"{path}:{subject_line}:10: warning: the subject says May 2023, but this issue is "
        "dated December 2026: rewrite it for this issue"
    ]
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "new", "2023-05-again", "--from", EARLIER]
    )
    assert result.exit_code == 0, result.output
    # Run today: May 2023 is never today's month and year, so the warning shows.
    assert "warning: the subject says May 2023" in result.stdout


def test_a_copy_in_the_same_month_has_nothing_to_warn_about(project_dir: Path) -> None:
    path = new_issue(open_project(project_dir), "2023-05-b", EARLIER, today=date(2023, 5, 30))
    assert outdated_dates(path) == []


@pytest.mark.parametrize(
    ("day", "offset"),
    [(date(2026, 12, 7), "+00:00"), (date(2026, 7, 7), "+01:00")],
    ids=["winter", "summer"],
)
def test_the_send_at_hint_has_the_offset_the_new_date_will_have(
    project_dir: Path, day: date, offset: str
) -> None:
    path = new_issue(open_project(project_dir), "next", EARLIER, today=day)
    text = path.read_text(encoding="utf-8")
    assert f'add `send_at: "{day.isoformat()}T09:00:00{offset}"`' in text
    other = "+01:00" if offset == "+00:00" else "+00:00"
    assert other not in text.split("\nid:")[0]
