"""Who gets an issue: de-duplication, suppression, variants, encodings, and streaming a large audience."""

from __future__ import annotations

import csv
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from email_validator import EmailNotValidError, validate_email

import newsletter.audience.lists
import newsletter.core.project
from newsletter.audience.lists import (
    AudienceCounts,
    Recipient,
    SuppressedAddress,
    count_audience,
    iter_audience,
    read_audience_source,
    sample_recipients,
)
from newsletter.audience.suppression import add_suppression
from newsletter.cli import cli
from newsletter.core.checks import check_email
from newsletter.core.errors import ContentError
from newsletter.core.paths import ProjectPaths
from newsletter.core.project import Project, open_project

HEADER = ("email", "name", "organisation", "agency", "role", "district")
LIST_NAMES = ("comms", "designated-safeguarding-leads", "lead-officers")
ISSUE_ID = "2023-05-panel-reports"
# The sample issue's one section limited by agency; everyone else gets every section.
AGENCY_SECTION = "bruising-in-non-mobile-infants"
AGENCY_SECTION_AGENCIES = {"health", "childrens-social-care", "police", "education"}


def write_list(path: Path, rows: Iterable[Sequence[str]], encoding: str = "utf-8") -> None:
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


def replace_lists(project_dir: Path, lists: dict[str, list[tuple[str, ...]]]) -> None:
    """Give the sample project these lists (the segments name all three, so keep them all)."""
    for name in LIST_NAMES:
        write_list(project_dir / "recipients" / "lists" / f"{name}.csv", lists.get(name, []))


def write_suppressed(project_dir: Path, rows: Iterable[tuple[str, str, str]]) -> None:
    with (project_dir / "recipients" / "suppressed.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("email", "date", "reason"))
        writer.writerows(rows)


def person(address: str, name: str, agency: str = "health", role: str = "practitioner") -> tuple:
    return (address, name, "Example Trust", agency, role, "North")


def test_one_person_on_three_lists_in_different_case_gets_one_entry(project_dir: Path) -> None:
    replace_lists(
        project_dir,
        {
            "comms": [person("Sam.Taylor@Example.org", "Sam Taylor"), person("a@example.org", "A")],
            "designated-safeguarding-leads": [person("SAM.TAYLOR@EXAMPLE.ORG", "S. Taylor")],
            "lead-officers": [
                person("sam.taylor@example.org", "Samuel Taylor", role="lead-officer")
            ],
        },
    )
    write_suppressed(project_dir, [])
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE_ID)
    counts = AudienceCounts()

    people = list(iter_audience(project.audience_source(), issue, counts))

    sams = [r for r, _ in people if r.key == "sam.taylor@example.org"]
    assert len(sams) == 1
    sam = sams[0]
    # The record is the first row met, reading the lists in name order (comms first).
    assert (sam.email, sam.name, sam.role) == (
        "Sam.Taylor@Example.org",
        "Sam Taylor",
        "practitioner",
    )
    assert sam.lists == LIST_NAMES
    assert sam.extra == {"district": "North"}
    assert counts.recipients == 2
    assert counts.duplicates_merged == 2
    assert counts.rows_read == 4


def test_suppressed_address_in_different_case_is_removed_and_counted(project_dir: Path) -> None:
    replace_lists(
        project_dir,
        {
            "comms": [person("Kim.Lee@example.org", "Kim Lee"), person("b@example.org", "B")],
            "lead-officers": [person("kim.lee@EXAMPLE.org", "Kim Lee", role="lead-officer")],
        },
    )
    write_suppressed(project_dir, [("KIM.LEE@EXAMPLE.ORG", "2023-01-09", "unsubscribed")])
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE_ID)
    counts = AudienceCounts()
    seen: list[tuple[Recipient, SuppressedAddress]] = []

    people = list(
        iter_audience(
            project.audience_source(),
            issue,
            counts,
            on_suppressed=lambda r, s: seen.append((r, s)),
        )
    )

    assert [r.email for r, _ in people] == ["b@example.org"]
    assert counts.suppressed == 1
    assert counts.duplicates_merged == 1  # the second row of the suppressed person
    assert [(r.email, s.reason) for r, s in seen] == [("Kim.Lee@example.org", "unsubscribed")]


def test_an_address_suppressed_during_a_command_is_left_out_of_the_next_audience(
    project_dir: Path,
) -> None:
    """The project keeps segments for the whole command, never the suppression list."""
    replace_lists(
        project_dir, {"comms": [person("kim@example.org", "Kim"), person("b@e.org", "B")]}
    )
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE_ID)
    assert count_audience(project.audience_source(), issue).recipients == 2

    add_suppression(project.paths.suppressed_path, "kim@example.org", "hard-bounce", "2023-05-15")

    people = [r.email for r, _ in iter_audience(project.audience_source(), issue)]
    assert people == ["b@e.org"]


def test_the_catalogue_and_segments_are_read_once_per_command(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []

    def counted(name: str) -> Callable[..., Any]:
        real = getattr(newsletter.core.project, name)

        def read(*args: Any) -> Any:
            reads.append(name)
            return real(*args)

        return read

    for name in ("read_catalogue", "read_project_segments"):
        monkeypatch.setattr(newsletter.core.project, name, counted(name))
    for _ in range(3):
        issue = project.load_issue(ISSUE_ID)
        project.audience_source()
    project.catalogue()
    assert sorted(reads) == ["read_catalogue", "read_project_segments"]
    assert issue.id == ISSUE_ID


def test_each_person_gets_the_variant_for_their_agency(project_dir: Path) -> None:
    replace_lists(
        project_dir,
        {
            "comms": [
                person("nurse@example.org", "Nurse", agency="health"),
                person("officer@example.org", "Officer", agency="POLICE"),
                person("charity@example.org", "Charity worker", agency="voluntary-sector"),
                person("adults@example.org", "Adult social worker", agency="adults-social-care"),
            ]
        },
    )
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE_ID)
    every_section = tuple(s.id for s in issue.sections)

    got = {r.email: v for r, v in iter_audience(project.audience_source(), issue)}

    assert got["nurse@example.org"].section_ids == every_section
    assert got["officer@example.org"].section_ids == every_section
    for address in ("charity@example.org", "adults@example.org"):
        assert AGENCY_SECTION not in got[address].section_ids
        assert len(got[address].section_ids) == len(every_section) - 1
        assert got[address].key == f"without-{AGENCY_SECTION}"
    samples, counts = sample_recipients(project.audience_source(), issue)
    assert set(samples) == {"all-sections", f"without-{AGENCY_SECTION}"}
    assert samples["all-sections"][0].email == "nurse@example.org"
    assert dict(counts.per_variant) == {"all-sections": 2, f"without-{AGENCY_SECTION}": 2}


def test_a_list_saved_by_excel_as_csv_utf8_with_a_bom_is_read(project_dir: Path) -> None:
    lists_dir = project_dir / "recipients" / "lists"
    replace_lists(project_dir, {})
    write_list(
        lists_dir / "comms.csv", [person("zoe@example.org", "Zoë Clarke")], encoding="utf-8-sig"
    )
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "validate", "--quiet"])
    assert result.exit_code == 0, result.output
    project = open_project(project_dir)
    people = list(iter_audience(project.audience_source(), project.load_issue(ISSUE_ID)))
    assert [(r.email, r.name) for r, _ in people] == [("zoe@example.org", "Zoë Clarke")]


def test_a_list_not_saved_as_utf8_is_a_located_error_not_a_traceback(project_dir: Path) -> None:
    lists_dir = project_dir / "recipients" / "lists"
    replace_lists(project_dir, {})
    write_list(
        lists_dir / "comms.csv",
        [person("a@example.org", "Ann"), person("c.oneill@example.com", "Ciarán O'Neill")],
        encoding="cp1252",
    )
    where = f"{(lists_dir / 'comms.csv').resolve()}:3:26: this file is not saved as UTF-8 text"

    result = CliRunner().invoke(cli, ["--root", str(project_dir), "validate"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert where in result.stderr

    result = CliRunner().invoke(cli, ["--root", str(project_dir), "audience", ISSUE_ID])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert where in result.stderr
    project = open_project(project_dir)
    with pytest.raises(ContentError):
        count_audience(project.audience_source(), project.load_issue(ISSUE_ID))


def test_segment_rules_are_checked_with_locations(project_dir: Path) -> None:
    segments = project_dir / "recipients" / "segments.yaml"
    segments.write_text(
        "segments:\n"
        "  all-practitioners:\n"
        "    lists: [comms, lead-oficers]\n"
        "  leads:\n"
        "    union: [lead-oficers]\n"
        "  loop:\n"
        "    union: [loop]\n"
        "  nurses:\n"
        "    agency: helth\n",
        encoding="utf-8",
    )
    source, problems = read_audience_source(ProjectPaths(project_dir))
    shown = [str(p).removeprefix(f"{segments.resolve()}:") for p in problems]
    assert shown == [
        "3:20: segment `all-practitioners` uses the list `lead-oficers`, but there is no "
        "recipients/lists/lead-oficers.csv; did you mean `lead-officers`?",
        "5:13: segment `lead-oficers` is not defined",
        "9:13: `helth` is not an agency; did you mean `health`? (agencies: health, police, "
        "education, childrens-social-care, adults-social-care, voluntary-sector)",
        "7:5: segment `loop` includes itself through `union`",
    ]
    assert set(source.segments) == {"all-practitioners", "leads", "loop", "nurses"}


@pytest.mark.parametrize(
    "address",
    [
        "a@example.org",
        "A.B@Example.ORG",
        "o'neill@example.com",
        "a+tag@example.org",
        "a!#$%&*+/=?^_`{|}~-@example.org",
        "zoë@example.org",
        "a@exämple.org",
        "a..b@example.org",
        ".a@example.org",
        "a.@example.org",
        "a@example",
        "a@localhost",
        "a@x.invalid",
        "a@-x.org",
        "a@x_y.org",
        "a b@example.org",
        '"a b"@example.org',
        "a@[192.0.2.1]",
        "a@example.org.",
        "a@b@example.org",
        "@example.org",
        "a@",
        "x" * 65 + "@example.org",
        "a@" + "b" * 250 + ".org",
    ],
)
def test_check_email_agrees_with_email_validator(address: str) -> None:
    """check_email caches domain checks for speed; it must still give email-validator's answer."""
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    assert check_email(address) == expected


AGENCIES = ("health", "police", "education", "childrens-social-care", "adults-social-care")


# The stream's memory budget per person: 60 MB for 100,000 people. It holds each
# address once (to merge duplicates), never the person, so its peak grows with the
# number of people at a few hundred bytes each; 20,000 people measure that growth as
# well as 100,000 did, in a fifth of the time (tracemalloc slows every allocation).
STREAM_BYTES_PER_PERSON = 600


@pytest.mark.slow
def test_a_large_audience_streams_lazily_in_bounded_memory(project_dir: Path) -> None:
    """20,000 people across two lists (2,000 on both) resolve one at a time.

    The stream keeps addresses, not people: its peak stays under 600 bytes a
    person (60 MB for 100,000) and far below what a list of the same
    Recipient objects costs.
    """
    total, overlap = 20_000, 2_000
    lists_dir = project_dir / "recipients" / "lists"
    comms = [
        person(f"person{i:06d}@example.org", f"Person {i}", agency=AGENCIES[i % len(AGENCIES)])
        for i in range(total - overlap)
    ]
    leads = [
        person(f"PERSON{i:06d}@EXAMPLE.ORG", f"Person {i}", agency=AGENCIES[i % len(AGENCIES)])
        for i in range(total - 2 * overlap, total)
    ]
    replace_lists(project_dir, {"comms": comms, "lead-officers": leads})
    write_suppressed(
        project_dir, [(f"person{i:06d}@example.org", "2023-01-01", "manual") for i in range(7)]
    )
    del comms, leads
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE_ID)
    source = project.audience_source()
    expected_people = total - 7
    expected_without = sum(
        1 for i in range(7, total) if AGENCIES[i % len(AGENCIES)] == "adults-social-care"
    )

    counts = AudienceCounts()
    stream = iter_audience(source, issue, counts)
    tracemalloc.start()
    try:
        first, _ = next(stream)
        # Only the rows up to the first person were read for the second pass: nothing was
        # materialised ahead of the consumer.
        assert first.email == "person000007@example.org"
        assert (counts.rows_read, counts.recipients) == (8, 1)
        consumed = 1 + sum(1 for _ in stream)
        _, stream_peak = tracemalloc.get_traced_memory()

        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        # What holding everyone would cost: one Recipient per person, built from the
        # same rows the way the stream builds the one it yields.
        held = []
        for list_path in sorted(lists_dir.glob("*.csv")):
            with list_path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    held.append(
                        Recipient(
                            email=row["email"].strip(),
                            name=row["name"].strip(),
                            organisation=row["organisation"].strip(),
                            agency=row["agency"].strip().lower(),
                            role=row["role"].strip().lower(),
                            lists=(list_path.stem,),
                            extra={"district": row["district"]},
                        )
                    )
                    if len(held) == total:
                        break
        assert len(held) == total
        list_cost = tracemalloc.get_traced_memory()[0] - baseline
        del held
    finally:
        tracemalloc.stop()

    assert consumed == expected_people
    assert counts.recipients == expected_people
    assert counts.suppressed == 7
    assert counts.duplicates_merged == overlap
    assert counts.rows_read == total + overlap
    assert counts.per_variant[f"without-{AGENCY_SECTION}"] == expected_without
    assert counts.per_variant["all-sections"] == expected_people - expected_without
    mb = 1024 * 1024
    assert stream_peak < total * STREAM_BYTES_PER_PERSON, f"stream peak {stream_peak / mb:.1f} MB"
    assert stream_peak * 3 < list_cost, (
        f"stream peak {stream_peak / mb:.1f} MB vs a list of Recipients {list_cost / mb:.1f} MB"
    )


def test_audience_source_counts_match_project(project: Project) -> None:
    """count_audience and sample_recipients agree about the shipped sample."""
    issue = project.load_issue(ISSUE_ID)
    counts = count_audience(project.audience_source(), issue)
    samples, sample_counts = sample_recipients(project.audience_source(), issue)
    assert counts.as_dict() == sample_counts.as_dict()
    assert set(samples) == set(counts.per_variant)
    for key, (recipient, variant) in samples.items():
        assert variant.key == key
        in_agency_section = AGENCY_SECTION in variant.section_ids
        assert in_agency_section == (recipient.agency in AGENCY_SECTION_AGENCIES)


def test_people_alike_but_for_one_column_are_placed_in_their_own_segments(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Segment answers are kept per combination of lists and the columns the
    # rules read; every column a rule reads must tell people apart.
    agencies = ("health", "police", "education", "Health ", "voluntary-sector")
    roles = ("practitioner", "team-manager", "lead-officer", "TEAM-MANAGER")
    rows = [
        person(f"p{i}@example.org", f"P {i}", agencies[i % 5], roles[(i // 5) % 4])
        for i in range(60)
    ]
    replace_lists(
        project_dir,
        {
            "comms": rows[:40],
            "lead-officers": rows[30:50],
            "designated-safeguarding-leads": rows[45:],
        },
    )
    write_suppressed(project_dir, [])
    source = open_project(project_dir).audience_source()

    def placed() -> dict[str, tuple[str, ...]]:
        of = newsletter.audience.lists.segments_of(source)
        issue = open_project(project_dir).load_issue(ISSUE_ID)
        return {r.email: of(r) for r, _ in iter_audience(source, issue)}

    kept = placed()
    monkeypatch.setattr(newsletter.audience.lists, "KEPT_SEGMENT_ANSWERS", 0)
    assert kept == placed()  # worked out person by person
    assert "managers" in kept["p5@example.org"]  # health, team-manager, comms only
    assert "managers" not in kept["p0@example.org"]  # health, practitioner, comms only
    assert "health" in kept["p15@example.org"]  # "Health " with a space, TEAM-MANAGER
    assert "leads" in kept["p35@example.org"] and "leads" not in kept["p5@example.org"]
