"""`newsletter validate` and `newsletter audience` on the shipped sample.

The audience numbers are worked out here from the CSV files with the csv
module and the YAML with yaml.safe_load, independently of newsletter.audience.lists,
so a change to the lists or a bug in the resolver shows up as a mismatch.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from newsletter.cli import cli

REPO_DIR = Path(__file__).resolve().parents[2]
ISSUE_ID = "2023-05-panel-reports"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@dataclass(frozen=True)
class Expected:
    recipients: int
    rows_read: int
    duplicates_merged: int
    suppressed: int
    per_segment: dict[str, int]
    per_variant: dict[str, int]  # variant key -> recipients
    variant_sections: dict[str, list[str]]


def expected_audience(root: Path, issue_id: str) -> Expected:
    """The audience of an issue, worked out from the files alone."""
    issue = yaml.safe_load((root / "issues" / f"{issue_id}.yaml").read_text(encoding="utf-8"))
    segments = yaml.safe_load((root / "recipients" / "segments.yaml").read_text(encoding="utf-8"))[
        "segments"
    ]
    list_paths = sorted((root / "recipients" / "lists").glob("*.csv"))
    named = set(issue["audience"]) | {n for s in issue["sections"] for n in s.get("audience", [])}
    # This independent reading knows two kinds of rule; fail loudly if the sample grows others.
    for name in named:
        assert set(segments[name]) - {"description"} in ({"lists"}, {"agency"}), name

    rows_read = 0
    first_row: dict[str, dict[str, str]] = {}
    lists_of: dict[str, set[str]] = {}
    for path in list_paths:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows_read += 1
                key = row["email"].strip().lower()
                first_row.setdefault(key, row)
                lists_of.setdefault(key, set()).add(path.stem)
    with (root / "recipients" / "suppressed.csv").open(newline="", encoding="utf-8") as handle:
        suppressed = {row["email"].strip().lower() for row in csv.DictReader(handle)}

    def member(name: str, key: str) -> bool:
        rule = segments[name]
        if "lists" in rule:
            return bool(lists_of[key] & set(rule["lists"]))
        return first_row[key]["agency"].strip().lower() == rule["agency"]

    audience = {k for k in first_row if any(member(n, k) for n in issue["audience"])}
    # Every list feeds the issue's audience in the sample, so every repeated row is a merge.
    assert audience == set(first_row)
    people = sorted(audience - suppressed)
    per_segment = Counter(n for k in people for n in named if member(n, k))
    every = [s["id"] for s in issue["sections"]]
    per_variant: Counter[str] = Counter()
    variant_sections: dict[str, list[str]] = {}
    for key in people:
        sections = [
            s["id"]
            for s in issue["sections"]
            if not s.get("audience") or any(member(n, key) for n in s["audience"])
        ]
        left_out = [s for s in every if s not in sections]
        variant = "all-sections" if not left_out else "without-" + "-and-".join(left_out)
        per_variant[variant] += 1
        variant_sections[variant] = sections
    return Expected(
        recipients=len(people),
        rows_read=rows_read,
        duplicates_merged=rows_read - len(first_row),
        suppressed=len(audience & suppressed),
        per_segment=dict(per_segment),
        per_variant=dict(per_variant),
        variant_sections=variant_sections,
    )


def test_validate_passes_on_the_shipped_repo_content() -> None:
    result = invoke("--root", str(REPO_DIR), "validate")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert re.search(r"^OK: 0 error\(s\), \d+ warning\(s\)$", result.stdout, re.M)


def test_validate_passes_on_a_fresh_copy_of_the_sample(project_dir: Path) -> None:
    result = invoke("--root", str(project_dir), "validate")
    assert result.exit_code == 0, result.output


def test_audience_json_matches_the_lists(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = expected_audience(project_dir, ISSUE_ID)
    # The sample is meant to show merging, suppression and two variants; keep it that way.
    assert expected.duplicates_merged and expected.suppressed and len(expected.per_variant) == 2
    monkeypatch.chdir(project_dir)

    result = invoke("audience", f"issues/{ISSUE_ID}.yaml", "--format", "json")

    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["issue"] == ISSUE_ID
    assert data["recipients"] == expected.recipients
    assert data["rows_read"] == expected.rows_read
    assert data["duplicates_merged"] == expected.duplicates_merged
    assert data["suppressed"] == expected.suppressed
    assert data["invalid"] == 0
    assert data["per_segment"] == expected.per_segment
    assert {v["key"]: v["recipients"] for v in data["per_variant"]} == expected.per_variant
    assert {v["key"]: v["sections"] for v in data["per_variant"]} == expected.variant_sections
    assert sum(v["recipients"] for v in data["per_variant"]) == expected.recipients


def test_audience_takes_a_path_relative_to_the_project_root(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "--root", str(project_dir), "audience", f"issues/{ISSUE_ID}.yaml", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["issue"] == ISSUE_ID


def expected_rows(expected: Expected, labels: dict[str, str]) -> list[tuple[str, str, int]]:
    rows = [
        ("total", "recipients", expected.recipients),
        ("total", "duplicates merged", expected.duplicates_merged),
        ("total", "suppressed", expected.suppressed),
    ]
    rows += [("segment", n, c) for n, c in sorted(expected.per_segment.items())]
    rows += [("variant", labels[k], c) for k, c in sorted(expected.per_variant.items())]
    return rows


def variant_labels(project_dir: Path) -> dict[str, str]:
    """`All sections`, or `Without: <titles>` for the sections a variant leaves out."""
    issue = yaml.safe_load((project_dir / "issues" / f"{ISSUE_ID}.yaml").read_text("utf-8"))
    titles = {s["id"]: s["title"] for s in issue["sections"]}
    labels = {"all-sections": "All sections"}
    for section_id, title in titles.items():
        labels[f"without-{section_id}"] = f"Without: {title}"
    return labels


def test_audience_csv_matches_the_lists(project_dir: Path) -> None:
    expected = expected_audience(project_dir, ISSUE_ID)
    result = invoke("--root", str(project_dir), "audience", ISSUE_ID, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["kind", "name", "count"]
    got = [(kind, name, int(count)) for kind, name, count in rows[1:]]
    assert got == expected_rows(expected, variant_labels(project_dir))


def test_audience_table_matches_the_lists(project_dir: Path) -> None:
    expected = expected_audience(project_dir, ISSUE_ID)
    result = invoke("--root", str(project_dir), "audience", ISSUE_ID)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Audience for {ISSUE_ID}: Reports from the Child Safeguarding Practice Review Panel"
    )
    table = [line for line in lines[1:] if line.strip()]
    assert re.fullmatch(r"kind\s+name\s+count", table[0])
    assert re.fullmatch(r"[- ]+", table[1])
    got = [
        re.fullmatch(r"(\S+)\s{2,}(.+?)\s{2,}(\d+)", line).groups()  # type: ignore[union-attr]
        for line in table[2:]
    ]
    want = [(k, n, str(c)) for k, n, c in expected_rows(expected, variant_labels(project_dir))]
    assert got == want


def test_audience_counts_follow_a_change_to_the_lists(project_dir: Path) -> None:
    """Add a person, a duplicate and a suppression, and the counts move with the files."""
    lists_dir = project_dir / "recipients" / "lists"
    before = json.loads(
        invoke("--root", str(project_dir), "audience", ISSUE_ID, "--format", "json").stdout
    )
    with (lists_dir / "comms.csv").open("a", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["new.person@example.org", "New Person", "Trust", "voluntary-sector", "x", ""]
        )
        writer.writerow(["NEW.PERSON@example.org", "New Person", "Trust", "health", "x", ""])
    result = invoke("--root", str(project_dir), "audience", ISSUE_ID, "--format", "json")
    after = json.loads(result.stdout)
    expected = expected_audience(project_dir, ISSUE_ID)
    assert after["recipients"] == before["recipients"] + 1 == expected.recipients
    assert after["duplicates_merged"] == before["duplicates_merged"] + 1
    assert {v["key"]: v["recipients"] for v in after["per_variant"]} == expected.per_variant


def test_audience_of_an_unknown_issue_is_a_plain_error(project_dir: Path) -> None:
    result = invoke("--root", str(project_dir), "audience", "2023-06-no-such-issue")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "no issue `2023-06-no-such-issue`" in result.stderr


def test_commands_outside_a_project_say_how_to_make_one(tmp_path: Path) -> None:
    result = invoke("--root", str(tmp_path), "audience", ISSUE_ID)
    assert result.exit_code == 1
    assert f"{tmp_path.resolve()} is not a newsletter project (it has no newsletter.yaml)" in (
        result.stderr
    )
    assert "--root" in result.stderr
    assert "newsletter init DIR" in result.stderr


# --- finding the project and the issue -------------------------------------------


TYPO = "2023-05-panel-report"


@pytest.mark.parametrize(
    "command",
    [
        ["validate", TYPO],
        ["audience", TYPO],
        ["render", TYPO],
        ["send", TYPO],
        ["retry", TYPO],
        ["approve", TYPO, "--by", "Jo Bloggs"],
        ["new", "2023-08-news", "--from", TYPO],
    ],
    ids=lambda words: words[0],
)
def test_every_command_taking_an_issue_suggests_the_nearest_id(
    project_dir: Path, command: list[str]
) -> None:
    result = invoke("--root", str(project_dir), *command)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"newsletter: no issue `{TYPO}` (there is no {project_dir / 'issues' / TYPO}.yaml); "
        f"did you mean `{ISSUE_ID}`?"
    )


def test_validate_takes_an_issue_id_and_checks_only_that_issue(project_dir: Path) -> None:
    broken = project_dir / "issues" / "2023-08-draft.yaml"
    broken.write_text("title: [not, text]\n", encoding="utf-8")

    assert invoke("--root", str(project_dir), "validate").exit_code == 1
    result = invoke("--root", str(project_dir), "validate", ISSUE_ID)
    assert result.exit_code == 0, result.output
    assert str(broken) not in result.output
    result = invoke("--root", str(project_dir), "validate", "2023-08-draft")
    assert result.exit_code == 1
    assert f"{broken}:1:8: `title` must be text" in result.stderr


def test_commands_run_from_a_subfolder_find_the_project(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project_dir / "recipients" / "lists")
    result = invoke("validate", "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("audience", ISSUE_ID, "--format", "json")
    assert result.exit_code == 0, result.output
    assert (
        json.loads(result.stdout)["recipients"]
        == expected_audience(project_dir, ISSUE_ID).recipients
    )


def test_root_and_newsletter_root_still_win_over_the_current_folder(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(project_dir / "issues")
    result = CliRunner().invoke(
        cli, ["audience", ISSUE_ID], env={"NEWSLETTER_ROOT": str(elsewhere)}
    )
    assert result.exit_code == 1
    assert f"{elsewhere.resolve()} is not a newsletter project" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["validate"], ["audience", ISSUE_ID], ["send", ISSUE_ID], ["schedule"], ["cron"]],
    ids=lambda words: words[0],
)
def test_outside_any_project_one_line_says_where_it_looked_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # A comms officer who opened a terminal in their home folder, not the project's.
    monkeypatch.chdir(tmp_path)
    result = invoke(*command)
    assert result.exit_code == 1
    assert result.stderr == (
        f"newsletter: no newsletter.yaml was found in {tmp_path.resolve()} or any folder above "
        "it: cd into your project folder (the one holding newsletter.yaml), or name it with "
        "--root DIR (or NEWSLETTER_ROOT=DIR); to start a project, run `newsletter init DIR`\n"
    )
    assert "file not found" not in result.output
    assert "no recipient lists" not in result.output


# --- what the last line says, and warnings that repeat -------------------------------


def break_reply_to(project_dir: Path) -> Path:
    path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("reply_to: ideas@example.org", "reply_to: ideas@"), "utf-8")
    return path


@pytest.mark.parametrize(
    ("command", "outcome"),
    [
        (["approve", ISSUE_ID, "--by", "Jo Bloggs"], "nothing was approved"),
        (["audience", ISSUE_ID], "the audience was not counted"),
        (["send", ISSUE_ID, "--send", "--yes"], "nothing was sent"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_the_last_line_names_the_first_error_and_what_was_not_done(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], outcome: str
) -> None:
    path = break_reply_to(project_dir)
    monkeypatch.chdir(project_dir)
    result = invoke(*command)
    assert result.exit_code == 1
    line = next(
        i for i, text in enumerate(path.read_text("utf-8").splitlines(), 1) if "ideas@" in text
    )
    assert result.stderr.splitlines()[-1] == (
        f"newsletter: 1 error in the content, at issues/{ISSUE_ID}.yaml:{line}:11; {outcome}"
    )


def test_validate_says_to_fix_the_errors_before_sending(project_dir: Path) -> None:
    path = break_reply_to(project_dir)
    (project_dir / "issues" / "publications.yaml").write_text(
        (project_dir / "issues" / "publications.yaml").read_text("utf-8") + "nonsense: 1\n",
        encoding="utf-8",
    )
    result = invoke("--root", str(project_dir), "validate")
    assert result.exit_code == 1
    last = result.stderr.splitlines()[-1]
    assert re.fullmatch(
        r"newsletter: 2 errors in the content, the first at \S+publications\.yaml:\d+:1; "
        r"fix them before sending \(2 error\(s\), 22 warning\(s\)\)",
        last,
    ), last
    assert "nothing was sent" not in result.output
    assert str(path) in result.stderr


def test_repeated_warnings_are_one_line_unless_verbose(project_dir: Path) -> None:
    result = invoke("--root", str(project_dir), "validate")
    assert result.exit_code == 0
    warnings = [line for line in result.stdout.splitlines() if ": warning: " in line]
    assert len(warnings) == 2
    assert warnings[0].endswith("(and 13 more publications without a URL; --verbose lists each)")
    assert warnings[1].endswith("(and 7 more links without a URL; --verbose lists each)")
    assert result.stdout.splitlines()[-1] == "OK: 0 error(s), 22 warning(s)"
    for verbose in (["--verbose", "validate"], ["validate", "--verbose"]):
        result = invoke("--root", str(project_dir), *verbose)
        assert len([line for line in result.stdout.splitlines() if ": warning: " in line]) == 22
        assert "more publications without a URL" not in result.stdout
