"""A project file that is a link leading out of the project is refused, by name; nothing goes out.

The incident: an issue file linked into issues/ from elsewhere was sent to 67
people and published. Each case links one kind of project file (issue,
catalogue, recipient list, suppressions, the recipients folder, a template)
to a copy outside the project and checks the command that would send or
publish it stops with `path:1:1:` naming the link and where it leads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from tests.support.project import ISSUE, edit_issue, speed_up

SEND_AT = "2023-05-15T09:00:00+01:00"
RECIPIENTS = 67


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def link_from_outside(project_dir: Path, relative: str, elsewhere: Path) -> tuple[Path, Path]:
    """Move the project's file or folder `relative` to `elsewhere` and link it back in."""
    inside = project_dir / relative
    outside = elsewhere / relative
    outside.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(inside, outside)
    inside.symlink_to(outside, target_is_directory=outside.is_dir())
    return inside, outside


def sent_messages(project_dir: Path) -> list[Path]:
    new = project_dir / "outbox" / "new"
    return list(new.iterdir()) if new.is_dir() else []


def assert_refused(result: Result, link: Path, target: Path) -> None:
    assert result.exit_code == 1, result.output
    assert f"{link}:1:1: this file leads to {target}" in result.output
    assert "outside the project" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    return tmp_path / "elsewhere"


def test_an_issue_linked_from_outside_is_not_sent(project_dir: Path, elsewhere: Path) -> None:
    link, target = link_from_outside(project_dir, f"issues/{ISSUE}.yaml", elsewhere)

    by_id = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert_refused(by_id, link, target)
    by_path = run(project_dir, "send", str(link), "--send", "--yes")
    assert_refused(by_path, link, target)
    assert sent_messages(project_dir) == []


def test_an_approved_issue_linked_from_outside_is_not_dispatched(
    project_dir: Path, elsewhere: Path
) -> None:
    speed_up(project_dir)
    edit_issue(project_dir, approved=True)
    link, target = link_from_outside(project_dir, f"issues/{ISSUE}.yaml", elsewhere)
    result = run(project_dir, "dispatch", "--now", SEND_AT)
    assert result.exit_code == 1, result.output
    assert f"{link}:1:1: this file leads to {target}" in result.output
    assert sent_messages(project_dir) == []


def test_an_issue_linked_from_outside_is_not_published(project_dir: Path, elsewhere: Path) -> None:
    edit_issue(project_dir, approved=True)
    link, target = link_from_outside(project_dir, f"issues/{ISSUE}.yaml", elsewhere)
    result = run(project_dir, "archive")
    assert_refused(result, link, target)
    assert not (project_dir / "site").exists()


def test_validate_reports_every_linked_file_located(project_dir: Path, elsewhere: Path) -> None:
    issue, issue_target = link_from_outside(project_dir, f"issues/{ISSUE}.yaml", elsewhere)
    catalogue, catalogue_target = link_from_outside(
        project_dir, "issues/publications.yaml", elsewhere
    )
    listed, list_target = link_from_outside(project_dir, "recipients/lists/comms.csv", elsewhere)
    result = run(project_dir, "validate")
    assert result.exit_code == 1, result.output
    for link, target in [
        (issue, issue_target),
        (catalogue, catalogue_target),
        (listed, list_target),
    ]:
        assert f"{link}:1:1: this file leads to {target}" in result.output


@pytest.mark.parametrize(
    "relative",
    ["recipients/lists/comms.csv", "recipients/suppressed.csv", "recipients/segments.yaml"],
)
def test_a_recipients_file_linked_from_outside_stops_the_send(
    project_dir: Path, elsewhere: Path, relative: str
) -> None:
    link, target = link_from_outside(project_dir, relative, elsewhere)
    result = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert_refused(result, link, target)
    assert sent_messages(project_dir) == []


def test_a_recipients_folder_linked_from_outside_stops_the_send(
    project_dir: Path, elsewhere: Path
) -> None:
    link_from_outside(project_dir, "recipients", elsewhere)
    result = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 1, result.output
    # Every file read through the linked folder is named, where it really lives.
    lists = project_dir / "recipients" / "lists"
    target = elsewhere / "recipients" / "lists" / "comms.csv"
    assert f"{lists / 'comms.csv'}:1:1: this file leads to {target}" in result.output
    assert sent_messages(project_dir) == []


def test_the_catalogue_linked_from_outside_is_not_published(
    project_dir: Path, elsewhere: Path
) -> None:
    edit_issue(project_dir, approved=True)
    link, target = link_from_outside(project_dir, "issues/publications.yaml", elsewhere)
    result = run(project_dir, "archive")
    assert_refused(result, link, target)
    assert not (project_dir / "site").exists()


@pytest.mark.parametrize("command", [("render", ISSUE), ("send", ISSUE, "--send", "--yes")])
def test_a_template_linked_from_outside_is_refused(
    project_dir: Path, elsewhere: Path, command: tuple[str, ...]
) -> None:
    link, target = link_from_outside(project_dir, "templates/email/_footer.html.j2", elsewhere)
    result = run(project_dir, *command)
    assert_refused(result, link, target)
    assert sent_messages(project_dir) == []
    assert not (project_dir / "out").exists()


def test_a_stylesheet_linked_from_outside_is_not_published(
    project_dir: Path, elsewhere: Path
) -> None:
    edit_issue(project_dir, approved=True)
    link, target = link_from_outside(project_dir, "templates/web/site.css", elsewhere)
    result = run(project_dir, "archive")
    assert_refused(result, link, target)


def test_links_that_stay_inside_the_project_are_fine(project_dir: Path) -> None:
    # A list and a template kept in another folder of the project, linked into place.
    shared = project_dir / "shared"
    shared.mkdir()
    for relative in ("recipients/lists/comms.csv", "templates/email/_footer.html.j2"):
        moved = shared / Path(relative).name
        shutil.move(project_dir / relative, moved)
        (project_dir / relative).symlink_to(moved)
    assert run(project_dir, "validate").exit_code == 0
    speed_up(project_dir)
    result = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 0, result.output
    assert len(sent_messages(project_dir)) == RECIPIENTS
