"""suppressed.csv is the team's file: what the reader accepts the writers accept, in the file's own form.

Excel saves it with a byte-order mark, `Email,Date,Reason` and semicolons;
an editor leaves a malformed row. The writers keep every byte a person wrote,
refuse (naming the row) what they cannot understand, and never write an
address that is not one.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.audience.suppression import (
    add_suppression,
    add_suppressions,
    read_suppressed,
    remove_suppression,
)
from newsletter.cli import cli
from newsletter.core.errors import NewsletterError, SuppressedFileError

BOM = "\ufeff"


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


@pytest.mark.parametrize(
    ("saved", "added"),
    [
        # Excel's "CSV UTF-8": a byte-order mark, capitalised headers, CRLF.
        (f"{BOM}Email,Date,Reason\r\nk.murphy@example.com,2023-01-04,manual\r\n", ","),
        # Excel where the decimal mark is a comma: semicolons.
        ("EMAIL;DATE;REASON\nk.murphy@example.com;2023-01-04;manual\n", ";"),
        # Columns in another order, spaces around the names, no newline at the end.
        (" reason , email , date\nmanual,k.murphy@example.com,2023-01-04", ","),
    ],
)
def test_the_cli_adds_and_removes_in_the_files_own_dialect(
    project_dir: Path, saved: str, added: str
) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    path.write_bytes(saved.encode("utf-8"))

    result = run(project_dir, "unsubscribe", "new.person@example.org", "--reason", "manual")

    assert result.exit_code == 0, result.output
    text = path.read_bytes().decode("utf-8")
    assert text.startswith(saved)  # nothing the team wrote was touched
    new_line = text[len(saved) :].lstrip("\r\n")
    assert new_line.count(added) == 2 and "new.person@example.org" in new_line
    assert "new.person@example.org" in read_suppressed(path)[0]
    assert run(project_dir, "validate").exit_code == 0

    assert run(project_dir, "resubscribe", "new.person@example.org").exit_code == 0
    assert path.read_bytes().decode("utf-8").rstrip("\r\n") == saved.rstrip("\r\n")


def test_a_row_the_writer_cannot_understand_is_refused_by_line_and_kept(
    project_dir: Path,
) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    broken = "email,date,reason\nsam@example.org,2023-01-04,manual, extra\nnot-an-address,,\n"
    path.write_text(broken, encoding="utf-8")

    with pytest.raises(SuppressedFileError) as refused:
        add_suppression(path, "new@example.org", "manual", date(2023, 6, 1))
    message = str(refused.value)
    assert f"{path}:2:1: row 2 has 4 values" in message
    assert f"{path}:3:1: invalid email `not-an-address`" in message

    result = run(project_dir, "unsubscribe", "new@example.org")
    assert result.exit_code == 1
    assert f"{path}:2:1" in result.output and "Traceback" not in result.output
    assert path.read_text(encoding="utf-8") == broken


@pytest.mark.parametrize(
    "address",
    ["foo@bar..com", "not an address", '=HYPERLINK("x")', "nul\0@example.org", "a@b", ""],
)
def test_an_address_that_is_not_one_is_never_written(project_dir: Path, address: str) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    before = path.read_bytes()

    result = add_suppressions(path, [(address, "hard-bounce")], date(2023, 6, 1))

    assert result.added == ()
    [(refused, why)] = result.refused
    assert refused == address.strip()
    assert "is not a valid email address" in why
    assert "\0" not in why  # shown escaped, for a person
    assert path.read_bytes() == before
    with pytest.raises(NewsletterError):
        add_suppression(path, address, "hard-bounce", date(2023, 6, 1))


def test_a_batch_is_one_write_that_skips_the_invalid_and_the_listed(project_dir: Path) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    result = add_suppressions(
        path,
        [
            ("one@example.org", "hard-bounce"),
            ("E.Walsh@Example.com", "complaint"),  # listed already
            ("two@", "hard-bounce"),
            ("two@example.org", "complaint"),
        ],
        date(2023, 6, 1),
    )
    assert result.added == ("one@example.org", "two@example.org")
    assert result.already == ("E.Walsh@Example.com",)
    assert [a for a, _ in result.refused] == ["two@"]
    suppressed, problems = read_suppressed(path)
    assert problems == []
    assert suppressed["two@example.org"].reason == "complaint"


def test_a_linked_file_is_written_through_under_a_lock_on_its_target(project_dir: Path) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    shared = project_dir / "shared" / "suppressed.csv"
    shared.parent.mkdir()
    path.rename(shared)
    path.symlink_to(shared)

    assert add_suppression(path, "new@example.org", "manual", date(2023, 6, 1))
    assert remove_suppression(path, "e.walsh@example.com")

    assert path.is_symlink()
    text = shared.read_text(encoding="utf-8")
    assert "new@example.org" in text and "e.walsh" not in text.lower()
    assert (shared.parent / "suppressed.csv.lock").exists()
    assert not (path.parent / "suppressed.csv.lock").exists()


def test_removing_a_row_whose_value_spans_lines_removes_all_of_it(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    path.write_text(
        'email,date,reason\na@example.org,2023-01-01,"asked by phone,\nthen by letter"\n'
        "b@example.org,2023-01-02,manual\n",
        encoding="utf-8",
    )
    assert remove_suppression(path, "a@example.org")
    assert (
        path.read_text(encoding="utf-8") == "email,date,reason\nb@example.org,2023-01-02,manual\n"
    )
