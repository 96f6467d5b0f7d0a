"""The audience is content: a bad list stops a send as a bad issue does, every problem located.

The lists are edited here the way people edit them (a typo in an address, a
name pasted with a line break, a file saved by a European Excel with
semicolons), and the send is made through the real command line with the
outbox transport, so "nothing was sent" means the outbox is empty.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.audience.lists import check_list, iter_audience
from newsletter.cli import cli
from newsletter.core.errors import ContentError
from newsletter.core.project import open_project
from tests.support.project import approve_sample, speed_up

ISSUE = "2023-05-panel-reports"
HEADER = ("email", "name", "organisation", "agency", "role", "district")


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def list_path(project_dir: Path, name: str) -> Path:
    return project_dir / "recipients" / "lists" / f"{name}.csv"


def add_rows(path: Path, rows: Iterable[Sequence[str]]) -> list[int]:
    """Append rows as a spreadsheet would (quoting as needed); return the line each starts on."""
    text = path.read_text(encoding="utf-8")
    line = text.count("\n") + 1
    starts = []
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            starts.append(line)
            writer.writerow(row)
            line += 1 + sum(cell.count("\n") for cell in row)
    return starts


def outbox_files(project_dir: Path) -> list[Path]:
    outbox = project_dir / "outbox"
    return sorted(p for p in outbox.rglob("*") if p.is_file()) if outbox.exists() else []


def send(project_dir: Path) -> Result:
    speed_up(project_dir)  # who is sent to is the subject here, not the pace
    return run(project_dir, "send", ISSUE, "--send", "--yes", "--transport", "outbox")


def approve_and_schedule(project_dir: Path) -> None:
    speed_up(project_dir)  # who is sent to is the subject here, not the pace
    approve_sample(project_dir)  # the sample is scheduled already; approve it as it stands


def test_the_sample_sends_to_everyone(project_dir: Path) -> None:
    """The baseline the refusals below are measured against."""
    result = send(project_dir)
    assert result.exit_code == 0, result.output
    assert len(outbox_files(project_dir)) == 67


def test_a_bad_row_in_any_list_stops_the_send_and_every_problem_is_listed(
    project_dir: Path,
) -> None:
    comms, leads = list_path(project_dir, "comms"), list_path(project_dir, "lead-officers")
    (typo,) = add_rows(comms, [("k.obi@example", "Kemi Obi", "Trust", "health", "lead", "")])
    (agency,) = add_rows(leads, [("r.ng@example.org", "Rita Ng", "Trust", "helth", "lead", "")])

    result = send(project_dir)

    assert result.exit_code == 1
    assert outbox_files(project_dir) == []
    assert "Traceback" not in result.output
    assert f"{comms}:{typo}:1: invalid email `k.obi@example` on row {typo} (field `email`)" in (
        result.stderr
    )
    assert (
        f"{leads}:{agency}:4: `helth` on row {agency} is not an agency; did you mean `health`?"
    ) in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"newsletter: 2 errors in the content, the first at {comms}:{typo}:1; nothing was sent"
    )


def test_dispatch_sends_nothing_from_a_list_with_a_bad_row(project_dir: Path) -> None:
    approve_and_schedule(project_dir)
    comms = list_path(project_dir, "comms")
    (line,) = add_rows(comms, [("", "Nobody", "Trust", "health", "practitioner", "North")])

    result = run(project_dir, "dispatch", "--now", "2023-05-15T10:00:00+01:00")

    assert result.exit_code == 1
    assert outbox_files(project_dir) == []
    assert f"{comms}:{line}:1: row {line} has no email address (field `email`)" in result.stderr
    # Once the row is fixed, the same dispatch sends the issue.
    rows = comms.read_text("utf-8").splitlines(keepends=True)
    comms.write_text("".join(row for row in rows if ",Nobody," not in row), encoding="utf-8")
    result = run(project_dir, "dispatch", "--now", "2023-05-15T10:00:00+01:00")
    assert result.exit_code == 0, result.output
    assert len(outbox_files(project_dir)) == 67


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Jo Bloggs\nBcc: everyone@example.org", "a line break"),
        ("Jo\u2028Bloggs", "a line break"),
        ("Jo\x07Bloggs", "a control character (U+0007)"),
    ],
)
def test_a_name_with_a_line_break_is_a_located_error_and_nobody_is_sent_to(
    project_dir: Path, name: str, shown: str
) -> None:
    comms = list_path(project_dir, "comms")
    (line,) = add_rows(comms, [("jo@example.org", name, "Trust", "health", "practitioner", "")])

    result = run(project_dir, "validate")
    assert result.exit_code == 1
    message = f"the name on row {line} contains {shown}; it must be one line of plain text"
    assert f"{comms}:{line}:2: {message} (field `name`)" in result.stderr

    result = send(project_dir)
    assert result.exit_code == 1
    assert outbox_files(project_dir) == []
    assert message in result.stderr


def test_a_problem_in_segments_or_suppressions_is_listed_with_the_lists_problems(
    project_dir: Path,
) -> None:
    suppressed = project_dir / "recipients" / "suppressed.csv"
    (bad_suppression,) = add_rows(suppressed, [("not-an-address", "2023-05-01", "manual")])
    comms = list_path(project_dir, "comms")
    (typo,) = add_rows(comms, [("k.obi@example", "Kemi Obi", "Trust", "health", "lead", "")])
    project = open_project(project_dir)

    with pytest.raises(ContentError) as refused:
        project.audience_source()

    shown = [str(p) for p in refused.value.problems]
    assert f"{suppressed}:{bad_suppression}:1: invalid email `not-an-address` on row " in (
        "\n".join(shown)
    )
    assert any(s.startswith(f"{comms}:{typo}:1: invalid email `k.obi@example`") for s in shown)
    assert send(project_dir).exit_code == 1
    assert outbox_files(project_dir) == []


def test_a_row_with_an_unquoted_comma_is_an_error_not_a_shifted_row(project_dir: Path) -> None:
    comms = list_path(project_dir, "comms")
    line = comms.read_text("utf-8").count("\n") + 1
    with comms.open("a", encoding="utf-8") as handle:
        handle.write("s.jones@example.org,Jones, Sam,Trust,health,practitioner,North\n")

    problems = [str(p) for p in check_list(comms)]

    assert problems == [
        f"{comms}:{line}:1: row {line} has 7 values but the header has 6 columns; "
        "a value with a comma in it must be in double quotes"
    ]


def test_empty_rows_left_by_a_spreadsheet_are_not_errors(project_dir: Path) -> None:
    comms = list_path(project_dir, "comms")
    with comms.open("a", encoding="utf-8") as handle:
        handle.write(",,,,,\n\n  ,,,,,\n")
    assert check_list(comms) == []
    assert send(project_dir).exit_code == 0
    assert len(outbox_files(project_dir)) == 67


def european_excel(rows: Iterable[Sequence[str]], header: Sequence[str]) -> bytes:
    """A list as Excel saves "CSV UTF-8" where the decimal mark is a comma: BOM, semicolons."""
    lines = [";".join(header)] + [";".join(row) for row in rows]
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def test_a_semicolon_list_with_a_bom_and_loose_headers_is_read(project_dir: Path) -> None:
    comms = list_path(project_dir, "comms")
    header = (" Email", "Name ", "ORGANISATION", "Agency", "Role", "District")
    comms.write_bytes(
        european_excel(
            [
                ("new.one@example.org", "New One", "Trust, North", "health", "practitioner", "N"),
                ("new.two@example.org", " New Two ", "School", "Education", "dsl", "S"),
            ],
            header,
        )
    )
    assert check_list(comms) == []
    project = open_project(project_dir)
    people = {
        r.email: r for r, _ in iter_audience(project.audience_source(), project.load_issue(ISSUE))
    }
    one, two = people["new.one@example.org"], people["new.two@example.org"]
    assert (one.name, one.organisation, one.agency, one.extra) == (
        "New One",
        "Trust, North",
        "health",
        {"district": "N"},
    )
    assert (two.name, two.organisation, two.agency, two.role) == (
        "New Two",
        "School",
        "education",
        "dsl",
    )


def test_a_tab_separated_list_is_read(project_dir: Path) -> None:
    comms = list_path(project_dir, "comms")
    rows = ["\t".join(HEADER), "t.one@example.org\tT One\tTrust\tpolice\tofficer\tCentral"]
    comms.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert check_list(comms) == []
    project = open_project(project_dir)
    people = {
        r.email: r for r, _ in iter_audience(project.audience_source(), project.load_issue(ISSUE))
    }
    officer = people["t.one@example.org"]
    assert (officer.name, officer.agency, officer.role, officer.lists) == (
        "T One",
        "police",
        "officer",
        ("comms",),
    )


def test_a_semicolon_list_missing_a_column_says_how_it_was_read(project_dir: Path) -> None:
    comms = list_path(project_dir, "comms")
    comms.write_bytes(
        european_excel(
            [("a@example.org", "A", "Trust", "health", "x")],
            ("email", "name", "organisation", "agncy", "role"),
        )
    )
    (problem,) = check_list(comms)
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message.startswith(
        "the header is missing the column(s): agency (this file is separated by semicolons); "
        "did you mean `agncy`?"
    )


def test_a_column_named_twice_is_an_error(project_dir: Path) -> None:
    comms = list_path(project_dir, "comms")
    comms.write_text(
        "email,name,organisation,agency,role,Email\na@example.org,A,T,health,x,b@example.org\n",
        encoding="utf-8",
    )
    assert [str(p) for p in check_list(comms)] == [
        f"{comms}:1:6: the column `email` is in the header twice (columns 1 and 6); "
        "remove or rename one"
    ]


def test_segment_conditions_match_columns_in_any_case(project_dir: Path) -> None:
    comms = list_path(project_dir, "comms")
    comms.write_text(comms.read_text("utf-8").replace("district", "District", 1), encoding="utf-8")
    segments = project_dir / "recipients" / "segments.yaml"
    segments.write_text(
        segments.read_text("utf-8") + "  north:\n    lists: [comms]\n    district: north\n",
        encoding="utf-8",
    )
    issue = project_dir / "issues" / f"{ISSUE}.yaml"
    issue.write_text(
        re.sub(r"(?m)^audience: .*$", "audience: [north]", issue.read_text("utf-8")),
        encoding="utf-8",
    )
    with comms.open(encoding="utf-8") as handle:
        north = {
            row["email"].lower()
            for row in csv.DictReader(handle)
            if row["District"].strip().lower() == "north"
        }
    with (project_dir / "recipients" / "suppressed.csv").open(encoding="utf-8") as handle:
        suppressed = {row["email"].lower() for row in csv.DictReader(handle)}
    project = open_project(project_dir)

    people = {r.key for r, _ in iter_audience(project.audience_source(), project.load_issue(ISSUE))}

    assert people == north - suppressed
    assert len(people) > 5
