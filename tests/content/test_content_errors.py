"""Every class of content error, each from its own fixture, as `newsletter validate` prints it.

Each fixture under tests/fixtures/content/ is dropped into a fresh copy of the
sample project; the test runs `newsletter --root <project> validate` and checks
the exact `path:line:column: message` line, the exit code (1 for any error, 0
for warnings only) and that no traceback escapes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli

FIXTURES_DIR = Path(__file__).parents[1] / "fixtures" / "content"


@dataclass(frozen=True)
class Case:
    fixture: str
    destination: str  # relative to the project directory
    expected: tuple[tuple[int, int, str], ...]  # (line, column, message) printed for it
    exit_code: int = 1
    check_only_fixture: bool = True  # pass the issue file to `validate` as PATHS


CASES = [
    Case(
        "unknown-publication.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                13,
                18,
                "unknown publication id `out-of-rutine`; did you mean `out-of-routine`? "
                "(publications are listed in publications.yaml)",
            ),
        ),
    ),
    Case(
        "invalid-email-row-12.csv",
        "recipients/lists/community.csv",
        ((12, 1, "invalid email `k.obi@example` on row 12 (field `email`)"),),
        check_only_fixture=False,
    ),
    Case(
        "undefined-segment.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                8,
                12,
                "segment `all-practitioner` is not defined in recipients/segments.yaml; "
                "did you mean `all-practitioners`?",
            ),
        ),
    ),
    Case(
        "send-at-naive.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                7,
                10,
                "warning: `send_at` has no time zone; read as Europe/London time, "
                "2023-05-15T09:00:00+01:00",
            ),
        ),
        exit_code=0,
    ),
    Case(
        "send-at-spring-forward.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                7,
                10,
                "`send_at` 2023-03-26T01:30:00 has no time zone and does not exist in "
                "Europe/London (the clocks go forward); it could mean "
                "2023-03-26T01:30:00+01:00 or 2023-03-26T01:30:00+00:00: "
                "write the offset you mean",
            ),
        ),
    ),
    Case(
        "send-at-fall-back.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                7,
                10,
                "`send_at` 2023-10-29T01:30:00 has no time zone and happens twice in "
                "Europe/London (the clocks go back); it could mean "
                "2023-10-29T01:30:00+01:00 or 2023-10-29T01:30:00+00:00: "
                "write the offset you mean",
            ),
        ),
    ),
    Case(
        "unsafe-links.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                16,
                14,
                "the link `javascript:alert(document.cookie)` uses javascript:, "
                "which is never allowed in an email",
            ),
            (
                18,
                14,
                "the link `http://www.gov.uk/government/publications/out-of-routine` "
                "uses http:, which is not secure; use https:",
            ),
        ),
    ),
    Case(
        "markdown-links.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                14,
                14,
                "the link `http://www.gov.uk/government/publications/out-of-routine` "
                "uses http:, which is not secure; use https:",
            ),
            (
                16,
                9,
                "the link `javascript:alert(1)` uses javascript:, which is never allowed in an email",
            ),
            (
                19,
                13,
                "the link `http://example.org/safer-sleep` uses http:, which is not secure; use https:",
            ),
        ),
    ),
    Case(
        "duplicate-section-ids.yaml",
        "issues/fixture-issue.yaml",
        ((17, 9, "the section id `out-of-routine` is used twice (first on line 11)"),),
    ),
    Case(
        "duplicate-publication-ids.yaml",
        "issues/publications.yaml",
        ((9, 9, "the publication id `out-of-routine` is used twice (first on line 3)"),),
        check_only_fixture=False,
    ),
    Case(
        "empty-section.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                11,
                5,
                "section `out-of-routine` is empty: give it a `lead_in`, `points`, "
                "`prompts` or `links`",
            ),
        ),
    ),
    Case(
        "lead-in-without-points.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                14,
                14,
                "section `out-of-routine` has a `lead_in` but no `points`: the lead-in "
                "introduces the bullet points that follow it; add `points`, or remove the lead-in",
            ),
        ),
    ),
    Case(
        "id-not-the-file-name.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                2,
                5,
                "the id `fixture-isue` does not match the file name fixture-issue.yaml: an "
                "issue's id is its file name, so rename the file to fixture-isue.yaml or change "
                "the id to `fixture-issue` (or remove the `id:` line)",
            ),
        ),
    ),
    Case(
        "unknown-field.yaml",
        "issues/fixture-issue.yaml",
        ((14, 5, "`prompt` is not a field of a section; did you mean `prompts`?"),),
    ),
    Case(
        "tab-indentation.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                12,
                1,
                "this line is indented with a tab (shown as →); YAML needs spaces: "
                "replace the tab with spaces, lined up with the lines above",
            ),
        ),
    ),
    Case(
        "bad-indentation.yaml",
        "issues/fixture-issue.yaml",
        (
            (
                13,
                4,
                "this line is indented differently from the fields around it: "
                "use the same number of spaces as the field above it",
            ),
        ),
    ),
    Case(
        "duplicate-key.yaml",
        "issues/fixture-issue.yaml",
        ((14, 5, "`title` appears twice in the same block (first on line 12); remove one"),),
    ),
]


def run_validate(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), "validate", *args])


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


@pytest.mark.parametrize("case", CASES, ids=[c.fixture for c in CASES])
def test_validate_prints_the_located_problem(project_dir: Path, case: Case) -> None:
    target = project_dir / case.destination
    shutil.copyfile(FIXTURES_DIR / case.fixture, target)
    if case.destination == "issues/publications.yaml":
        # The sample issue cites publications this small catalogue lacks; check the catalogue alone.
        (project_dir / "issues" / "2023-05-panel-reports.yaml").unlink()
    args = (str(target),) if case.check_only_fixture else ()

    result = run_validate(project_dir, *args)

    assert_no_traceback(result)
    printed = result.output.splitlines()
    shown_path = target.resolve()
    for line, column, message in case.expected:
        assert f"{shown_path}:{line}:{column}: {message}" in printed, result.output
    assert result.exit_code == case.exit_code, result.output
    errors_in_fixture = [
        p for p in printed if p.startswith(f"{shown_path}:") and ": warning: " not in p
    ]
    expected_errors = [m for *_, m in case.expected if not m.startswith("warning: ")]
    assert len(errors_in_fixture) == len(expected_errors), result.output


def test_errors_go_to_stderr_and_warnings_to_stdout(project_dir: Path) -> None:
    issue = project_dir / "issues" / "fixture-issue.yaml"
    shutil.copyfile(FIXTURES_DIR / "send-at-naive.yaml", issue)
    result = run_validate(project_dir, str(issue))
    assert "warning: `send_at` has no time zone" in result.stdout
    assert result.stderr == ""

    shutil.copyfile(FIXTURES_DIR / "unknown-field.yaml", issue)
    result = run_validate(project_dir, str(issue))
    assert "`prompt` is not a field of a section" in result.stderr
    assert "`prompt` is not a field" not in result.stdout


def test_quiet_hides_warnings_only(project_dir: Path) -> None:
    result = run_validate(project_dir, "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.output
    assert result.output.startswith("OK: 0 error(s)")


def test_an_invalid_issue_is_refused_by_commands_that_use_it(project_dir: Path) -> None:
    """Broken content never gets as far as planning a send: `audience` refuses it too."""
    issue = project_dir / "issues" / "fixture-issue.yaml"
    shutil.copyfile(FIXTURES_DIR / "unknown-publication.yaml", issue)
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "audience", "fixture-issue", "--format", "json"]
    )
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert f"{issue.resolve()}:13:18: unknown publication id `out-of-rutine`" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("", 1, 1, "the issue file is empty"),
        ("- a\n- b\n", 1, 1, "an issue must be a block of fields (`name: value` lines)"),
        (
            'title: "unterminated\n',
            1,
            8,
            'the quote (") opened here is never closed: add the closing " at the end of the '
            'value (to write " inside the value, write \\")',
        ),
        (
            "a: 1\n---\nb: 2\n",
            2,
            1,
            "a second document starts here (`---`); this file holds one: remove this line",
        ),
    ],
)
def test_malformed_issue_files_give_a_located_error(
    project_dir: Path, text: str, line: int, column: int, message: str
) -> None:
    issue = project_dir / "issues" / "broken.yaml"
    issue.write_text(text, encoding="utf-8")
    result = run_validate(project_dir, str(issue))
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert f"{issue.resolve()}:{line}:{column}: {message}" in result.output.splitlines()


def test_an_issue_that_is_not_utf8_is_located(project_dir: Path) -> None:
    issue = project_dir / "issues" / "latin1.yaml"
    issue.write_bytes("title: Caf\xe9 briefing\n".encode("latin-1"))
    result = run_validate(project_dir, str(issue))
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert f"{issue.resolve()}:1:1: the file is not UTF-8 text" in result.output
