"""The studio's live check says what `validate` says about the same text, next to the right field."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.core.project import open_project
from newsletter.review.validate import validate_project
from newsletter.web.studio.checks import DraftChecker
from tests.support.project import SAMPLE_ISSUE

BREAKAGES = {
    "no subject": ('subject: "News Update, May 2023: reports', 'subject: ""\nx_old: "'),
    "unknown segment": ("audience: [all-practitioners]", "audience: [all-practioners]"),
    "unknown publication": ("publication: out-of-routine\n", "publication: out-of-rutine\n"),
    "nothing wrong": ("", ""),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_check_of_unsaved_text_matches_validate_of_the_saved_file(
    project_dir: Path, breakage: str
) -> None:
    path = project_dir / "issues" / f"{SAMPLE_ISSUE}.yaml"
    old, new = BREAKAGES[breakage]
    text = path.read_text(encoding="utf-8").replace(old, new, 1)
    result = DraftChecker(project_dir).check(open_project(project_dir), path, text)
    path.write_text(text, encoding="utf-8")
    # Every error, and the warnings about the issue itself (the catalogue's own warnings,
    # about entries the issue may not use, are left to `validate`).
    expected = [p for p in validate_project(project_dir, [path]) if p.is_error or p.path == path]
    assert sorted(p.message for p in result.problems) == sorted(p.message for p in expected)
    where = {p.message: p.where for p in result.problems}
    for problem in expected:
        if problem.path == path:
            assert where[problem.message] == (
                f"issues/{SAMPLE_ISSUE}.yaml:{problem.line}:{problem.column}"
            )
    assert (result.state is not None) == (breakage == "nothing wrong")


def test_each_error_is_put_next_to_its_field(project_dir: Path) -> None:
    path = project_dir / "issues" / f"{SAMPLE_ISSUE}.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("audience: [all-practitioners]", "audience: [all-practioners]")
    text = text.replace("publication: out-of-routine\n", "publication: out-of-rutine\n", 1)
    result = DraftChecker(project_dir).check(open_project(project_dir), path, text)
    fields = {p.field for p in result.errors}
    assert fields == {"audience", "sections-1-publication"}, result.errors
