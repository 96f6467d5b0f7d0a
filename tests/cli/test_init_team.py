"""`newsletter init DIR` gives a real team its own project, ready for its first issue."""

from __future__ import annotations

import csv
import os
import pty
import subprocess
import sys
from datetime import date
from email import policy
from email.parser import BytesParser
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.content.new_project import draft_issue_id

ORGANISATION = "Exampletown Children's Partnership: Safeguarding"
SENDER = "news@exampletown.gov.uk"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=clean_env())


def init_team(target: Path) -> Result:
    return invoke("init", str(target), "--organisation", ORGANISATION, "--from-address", SENDER)


def test_a_team_project_has_its_own_settings_empty_lists_one_draft_and_no_approval(
    tmp_path: Path,
) -> None:
    target = tmp_path / "news"
    result = init_team(target)
    assert result.exit_code == 0, result.output

    settings = yaml.safe_load((target / "newsletter.yaml").read_text(encoding="utf-8"))
    assert settings["organisation"] == ORGANISATION  # a colon and an apostrophe kept as typed
    assert settings["from"] == {"name": ORGANISATION, "address": SENDER}
    assert settings["list_id"] == "news-update.exampletown.gov.uk"
    lists = list((target / "recipients" / "lists").glob("*.csv"))
    assert [p.name for p in lists] == ["practitioners.csv"]
    rows = list(csv.reader(lists[0].read_text(encoding="utf-8").splitlines()))
    assert rows == [["email", "name", "organisation", "agency", "role"]]
    issues = sorted(p.name for p in (target / "issues").glob("*.yaml"))
    draft = draft_issue_id(date.today())
    assert issues == [f"{draft}.yaml", "publications.yaml"]
    assert not (target / "approvals").exists()
    assert not list((target / "templates").rglob("*.j2"))  # the defaults are used
    assert "example.org" not in "".join(
        p.read_text(encoding="utf-8") for p in (target / "recipients").rglob("*.csv")
    )
    assert f"Next: cd {target}" in result.output

    result = invoke("--root", str(target), "validate")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    # Nothing is overdue, so cron's first run is quiet and succeeds.
    result = invoke("--root", str(target), "dispatch")
    assert result.exit_code == 0, result.output
    assert "nothing to send" in result.output
    result = invoke("--root", str(target), "send", draft)
    assert result.exit_code == 0, result.output
    assert "Recipients: 0" in result.output
    # A test copy before anyone is on the list says what to do, rather than nothing.
    result = invoke("--root", str(target), "send", draft, "--test-to", "me@example.org")
    assert result.exit_code == 1
    assert "add people to the lists in recipients/lists/" in result.stderr
    assert "newsletter outbox" not in result.output


def test_without_a_terminal_the_options_are_required_and_nothing_is_made(tmp_path: Path) -> None:
    target = tmp_path / "news"
    result = invoke("init", str(target), "--organisation", ORGANISATION)
    assert result.exit_code == 2
    assert "give --from-address (there is no terminal to ask at)" in result.stderr
    assert "--sample" in result.stderr
    assert not target.exists()


def test_a_sender_address_that_cannot_work_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    target = tmp_path / "news"
    result = invoke(
        "init", str(target), "--organisation", ORGANISATION, "--from-address", "news@exampletown"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("newsletter: the sender address: ")
    assert "news@exampletown" in result.stderr
    assert "Traceback" not in result.output
    assert not target.exists()


def test_at_a_terminal_init_asks_for_the_name_and_the_address(tmp_path: Path) -> None:
    target = tmp_path / "news"
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "newsletter", "init", str(target)],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    ) as process:
        os.close(terminal)
        os.write(controller, f"{ORGANISATION}\n{SENDER}\n".encode())
        out, err = process.communicate(timeout=120)
    os.close(controller)
    assert process.returncode == 0, err.decode()
    assert "Your organisation's name" in out.decode()
    settings = yaml.safe_load((target / "newsletter.yaml").read_text(encoding="utf-8"))
    assert settings["from"]["address"] == SENDER
    assert settings["organisation"] == ORGANISATION


def test_the_first_real_issue_path_of_the_readme(tmp_path: Path) -> None:
    """init, a person on the list, a test copy, approve, send: the README's steps 2 to 6."""
    target = tmp_path / "news"
    assert init_team(target).exit_code == 0
    draft = draft_issue_id(date.today())
    people = target / "recipients" / "lists" / "practitioners.csv"
    people.write_text(
        people.read_text(encoding="utf-8") + "jo@example.org,Jo Bloggs,Exampletown ICB,health,\n",
        encoding="utf-8",
    )
    root = ("--root", str(target))
    result = invoke(*root, "send", draft, "--test-to", "you@example.org; Jo <jo@example.org>")
    assert result.exit_code == 0, result.output
    assert len(list((target / "outbox" / "tests" / "new").iterdir())) == 2
    assert invoke(*root, "approve", draft, "--by", "Jo Bloggs").exit_code == 0
    result = invoke(*root, "send", draft, "--send", "--yes")
    assert result.exit_code == 0, result.output
    assert "Sent 1;" in result.output
    sent = list((target / "outbox" / "new").iterdir())
    assert len(sent) == 1
    message = BytesParser(policy=policy.default).parsebytes(sent[0].read_bytes())
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (ORGANISATION, SENDER)
    assert message["To"].addresses[0].addr_spec == "jo@example.org"
