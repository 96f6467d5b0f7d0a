"""An issue's identity is its file; `send_at` is optional (an issue without it is not scheduled)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import lxml.etree
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.review.validate import validate_project
from tests.support.project import approve_sample, speed_up

ISSUE = "2023-05-panel-reports"


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def issue_path(project_dir: Path, name: str = ISSUE) -> Path:
    return project_dir / "issues" / f"{name}.yaml"


def rewrite(path: Path, pattern: str, replacement: str) -> None:
    text, count = re.subn(pattern, replacement, path.read_text("utf-8"), flags=re.MULTILINE)
    assert count == 1, pattern
    path.write_text(text, encoding="utf-8")


def errors(project_dir: Path, path: Path) -> list[str]:
    return [str(p) for p in validate_project(project_dir, [path]) if p.is_error]


def test_an_issue_without_an_id_takes_its_file_name(project_dir: Path) -> None:
    copy = issue_path(project_dir, "2023-08-reprint")
    shutil.copyfile(issue_path(project_dir), copy)
    rewrite(copy, r"^id: .*\n", "")

    assert errors(project_dir, copy) == []
    assert open_project(project_dir).load_issue("2023-08-reprint").id == "2023-08-reprint"


def test_a_copied_file_that_keeps_the_old_id_is_an_error_naming_both(project_dir: Path) -> None:
    """The usual way two issues end up with one id: copy the file, forget the `id:` line."""
    copy = issue_path(project_dir, "2023-08-news")
    shutil.copyfile(issue_path(project_dir), copy)

    result = run(project_dir, "validate", "2023-08-news")

    assert result.exit_code == 1
    assert (
        f"{copy}:4:5: the id `{ISSUE}` does not match the file name 2023-08-news.yaml: an "
        f"issue's id is its file name, so rename the file to {ISSUE}.yaml or change the id "
        "to `2023-08-news` (or remove the `id:` line)"
    ) in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"newsletter: 1 error in the content, at {copy}:4:5; fix them before sending"
    )


def test_two_files_for_one_issue_are_an_error_naming_both(project_dir: Path) -> None:
    yml = project_dir / "issues" / f"{ISSUE}.yml"
    shutil.copyfile(issue_path(project_dir), yml)

    problems = errors(project_dir, yml)

    assert f"{yml}:4:1: {ISSUE}.yml and {ISSUE}.yaml are both the issue `{ISSUE}`" in (problems[0])
    result = run(project_dir, "send", ISSUE, "--send", "--yes", "--transport", "outbox")
    assert result.exit_code == 1
    assert f"{ISSUE}.yaml and {ISSUE}.yml are both the issue `{ISSUE}`" in result.stderr
    assert not (project_dir / "outbox").exists()


def test_an_issue_without_send_at_is_valid_and_not_scheduled(project_dir: Path) -> None:
    path = issue_path(project_dir)
    rewrite(path, r"^send_at: .*\n", "")

    assert errors(project_dir, path) == []
    issue = open_project(project_dir).load_issue(ISSUE)
    assert issue.send_at is None
    # It can still be sent by hand, once approved as it now stands.
    approve_sample(project_dir)
    speed_up(project_dir)
    result = run(project_dir, "send", ISSUE, "--send", "--yes", "--transport", "outbox")
    assert result.exit_code == 0, result.output


def test_the_archive_feed_dates_an_unscheduled_issue_by_its_date(
    project_dir: Path, tmp_path: Path
) -> None:
    path = issue_path(project_dir)
    rewrite(path, r"^send_at: .*\n", "")
    approve_sample(project_dir)

    result = run(project_dir, "archive", "--out", str(tmp_path / "site"))

    assert result.exit_code == 0, result.output
    feed = lxml.etree.parse(str(tmp_path / "site" / "feed.xml"))
    ns = {"atom": "http://www.w3.org/2005/Atom"}
    (updated,) = feed.xpath("/atom:feed/atom:entry/atom:updated/text()", namespaces=ns)
    assert updated == "2023-05-14T23:00:00Z"  # midnight on 15 May 2023 in London


def test_a_file_name_that_cannot_be_an_id_is_an_error(project_dir: Path) -> None:
    odd = project_dir / "issues" / "August News.yaml"
    shutil.copyfile(issue_path(project_dir), odd)
    rewrite(odd, r"^id: .*\n", "")

    (problem,) = errors(project_dir, odd)

    assert problem == (
        f"{odd}:4:1: the file name August News.yaml cannot be an issue id: rename it using "
        "lower-case letters, digits and hyphens, e.g. 2023-08-news-update.yaml"
    )
