"""`send --test-to` takes addresses as people paste them: from Outlook, with names, in lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from tests.support.project import SAMPLE_ISSUE


def send_test_copies(project_dir: Path, *values: str) -> Result:
    args = ["--root", str(project_dir), "send", SAMPLE_ISSUE, "--transport", "outbox"]
    for value in values:
        args += ["--test-to", value]
    return CliRunner().invoke(cli, args)


def addressed_to(result: Result) -> list[str]:
    """Who each test copy went to, from the `sent: test copy ... to ADDRESS -> file` lines."""
    return [
        line.split(" to ", 1)[1].split(" -> ")[0]
        for line in result.stdout.splitlines()
        if line.startswith("sent: test copy ")
    ]


@pytest.mark.parametrize(
    "value",
    [
        "me@example.org; editor@example.org",  # as Outlook writes a list
        "me@example.org;editor@example.org;",
        'Me Myself <me@example.org>; "Bloggs, Jo" <editor@example.org>',
        "me@example.org, editor@example.org",
    ],
)
def test_outlook_lists_and_display_names_give_each_address_its_copies(
    project_dir: Path, value: str
) -> None:
    result = send_test_copies(project_dir, value)
    assert result.exit_code == 0, result.output
    # Two variants in the sample, so two copies each.
    assert sorted(addressed_to(result)) == [
        "editor@example.org",
        "editor@example.org",
        "me@example.org",
        "me@example.org",
    ]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("me@example.org; jo@example", "jo@example"),
        ("me@example.org editor@example.org", "separate addresses with commas or semicolons"),
    ],
)
def test_a_list_with_a_bad_address_names_it_and_sends_nothing(
    project_dir: Path, value: str, said: str
) -> None:
    result = send_test_copies(project_dir, value)
    assert result.exit_code == 2
    assert said in result.stderr
    assert "SPACE" not in result.stderr and "Traceback" not in result.output
    assert not (project_dir / "outbox").exists()
