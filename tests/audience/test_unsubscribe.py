"""`newsletter unsubscribe` / `resubscribe`: the suppression list edited safely from the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner, Result

from newsletter.audience.lists import count_audience, iter_audience
from newsletter.cli import cli
from newsletter.core.project import open_project

ISSUE = "2023-05-panel-reports"


def _run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


def _rows(project_dir: Path) -> list[dict[str, str]]:
    path = project_dir / "recipients" / "suppressed.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _audience_keys(project_dir: Path) -> set[str]:
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE)
    return {r.key for r, _ in iter_audience(project.audience_source(), issue)}


def _someone(project_dir: Path) -> str:
    """An address that gets the sample issue now, spelt as it is in the list."""
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE)
    recipient, _ = next(iter(iter_audience(project.audience_source(), issue)))
    return recipient.email


def test_unsubscribe_removes_the_person_from_the_next_audience(project_dir: Path) -> None:
    address = _someone(project_dir)
    before = len(_rows(project_dir))

    result = _run(project_dir, "unsubscribe", address.upper(), "--reason", "complaint")

    assert result.exit_code == 0, result.output
    assert "unsubscribed" in result.output
    rows = _rows(project_dir)
    assert len(rows) == before + 1
    assert rows[-1]["email"].lower() == address.lower()
    assert rows[-1]["reason"] == "complaint"
    assert address.lower() not in _audience_keys(project_dir)
    project = open_project(project_dir)
    counts = count_audience(project.audience_source(), project.load_issue(ISSUE))
    assert counts.recipients == 66


def test_unsubscribing_twice_in_any_case_keeps_one_row(project_dir: Path) -> None:
    address = _someone(project_dir)
    assert _run(project_dir, "unsubscribe", address).exit_code == 0
    again = _run(project_dir, "unsubscribe", address.swapcase())
    assert again.exit_code == 0
    assert "already" in again.output
    matching = [r for r in _rows(project_dir) if r["email"].lower() == address.lower()]
    assert len(matching) == 1
    assert matching[0]["reason"] == "unsubscribed"


def test_resubscribe_puts_the_person_back(project_dir: Path) -> None:
    # k.murphy@example.com is suppressed in the sample and is on a list.
    assert "k.murphy@example.com" not in _audience_keys(project_dir)

    result = _run(project_dir, "resubscribe", "K.Murphy@Example.com")

    assert result.exit_code == 0, result.output
    assert all(r["email"].lower() != "k.murphy@example.com" for r in _rows(project_dir))
    assert "k.murphy@example.com" in _audience_keys(project_dir)
    again = _run(project_dir, "resubscribe", "k.murphy@example.com")
    assert again.exit_code == 0
    assert "was not on the suppression list" in again.output


def test_an_invalid_address_is_refused_and_the_file_left_alone(project_dir: Path) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    before = path.read_bytes()
    for bad in ("not-an-address", "someone@example.org,other@example.org", "a@b\nc@d"):
        result = _run(project_dir, "unsubscribe", bad)
        assert result.exit_code == 2, result.output
        assert "not a valid email address" in result.output
    assert path.read_bytes() == before


def test_a_reason_in_the_teams_own_words_is_kept(project_dir: Path) -> None:
    reason = "asked by phone, 3 March"
    result = _run(project_dir, "unsubscribe", "someone@example.org", "--reason", reason)
    assert result.exit_code == 0, result.output
    with (project_dir / "recipients" / "suppressed.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[-1] == {"email": "someone@example.org", "date": rows[-1]["date"], "reason": reason}
    assert _run(project_dir, "validate").exit_code == 0


def test_unsubscribing_an_address_on_no_list_says_so_and_still_suppresses(
    project_dir: Path,
) -> None:
    result = _run(project_dir, "unsubscribe", "Stranger@example.org")
    assert result.exit_code == 0, result.output
    assert "stranger@example.org is not on any recipient list" in result.output.lower()
    assert any(r["email"].lower() == "stranger@example.org" for r in _rows(project_dir))

    on_a_list = _run(project_dir, "unsubscribe", _someone(project_dir))
    assert on_a_list.exit_code == 0
    assert "not on any recipient list" not in on_a_list.output


def test_resubscribing_a_hard_bounce_or_complaint_needs_force(project_dir: Path) -> None:
    address = _someone(project_dir)
    for reason, why in (("hard-bounce", "hard bounce"), ("complaint", "complaint")):
        assert _run(project_dir, "unsubscribe", address, "--reason", reason).exit_code == 0

        refused = _run(project_dir, "resubscribe", address)

        assert refused.exit_code == 1
        assert why in refused.stderr
        assert f"newsletter resubscribe {address} --force" in refused.stderr
        assert address.lower() not in _audience_keys(project_dir)

        forced = _run(project_dir, "resubscribe", address, "--force")
        assert forced.exit_code == 0, forced.output
        assert address.lower() in _audience_keys(project_dir)
