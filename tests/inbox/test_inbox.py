"""`newsletter inbox` on a saved Maildir or mbox: what a comms officer sees, and what changes."""

from __future__ import annotations

import csv
import json
import mailbox
import os
import shlex
import sqlite3
import subprocess
from contextlib import closing
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.inbox.run import ledger_events
from newsletter.schedule.cron import cron_setup, newsletter_command
from tests.inbox.sent import record_sent, sign_with_test_secret

FIXTURES = Path(__file__).parents[1] / "fixtures" / "inbox"
ISSUE = "2023-05-panel-reports"
ADDED = {
    ("gone@example.com", "hard-bounce"),
    ("left@example.net", "hard-bounce"),
    ("moved@example.com", "hard-bounce"),
    ("nobody@example.com", "hard-bounce"),
    ("former@example.com", "hard-bounce"),
    ("departed@example.org", "hard-bounce"),
    ("closed@example.net", "hard-bounce"),
    ("nosuch@example.net", "hard-bounce"),
    ("annoyed@example.com", "complaint"),
    ("reader7@example.com", "complaint"),
    ("hidden@example.org", "complaint"),  # the reporter hid it; the ledger knows
    ("oldbox@example.net", "mailto"),  # our link's signed reference
}
NEVER_SUPPRESSED = {
    "slow@example.net",  # delayed
    "busy@example.com",  # delayed
    "blocklisted@example.net",  # refused by policy: not about the person
    "dmarc.strict@example.com",
    "unauthenticated@example.com",
    "prohibited@example.net",
    "sam.practitioner@example.com",  # out of office
    "alex.health@example.net",
    "chris.education@example.org",
    "jo.police@example.com",
    "lee.social@example.net",  # a person's reply
    "robin.care@example.com",  # asked in their own words: no signed reference, for a person
}


def make_maildir(path: Path, names: list[str] | None = None) -> Path:
    box = mailbox.Maildir(path, create=True)
    for fixture in sorted(FIXTURES.glob("*.eml")):
        if names is None or fixture.name in names:
            box.add(fixture.read_bytes())
    box.close()
    return path


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), "inbox", *args])


def _tables(ledger_path: Path) -> set[str]:
    if not ledger_path.exists():
        return set()
    with closing(sqlite3.connect(f"{ledger_path.as_uri()}?mode=ro", uri=True)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def suppressed_rows(project_dir: Path) -> list[dict[str, str]]:
    with (project_dir / "recipients" / "suppressed.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_returned_mail_suppresses_bounces_complaints_and_unsubscribes_once(
    sent_corpus: Path, tmp_path: Path
) -> None:
    project_dir = sent_corpus
    maildir = make_maildir(tmp_path / "returned")
    before = suppressed_rows(project_dir)

    first = run(project_dir, "--maildir", str(maildir))

    assert first.exit_code == 0, first.output
    rows = suppressed_rows(project_dir)
    assert rows[: len(before)] == before  # existing rows kept as they were
    new = rows[len(before) :]
    assert {(r["email"], r["reason"]) for r in new} == ADDED
    assert {r["date"] for r in new} == {date.today().isoformat()}
    listed = {r["email"].lower() for r in rows}
    assert not listed & NEVER_SUPPRESSED
    lines = first.output.splitlines()
    assert "hard bounces: 8 (8 added to the suppression list)" in lines
    assert (
        "refused for a reason that is not the address, e.g. a blocklist or DMARC "
        "(recorded, not suppressed): 4"
    ) in lines
    assert "delayed or temporary failures (recorded, not suppressed): 2" in lines
    assert "complaints: 3 (3 added to the suppression list)" in lines
    assert "unsubscribe requests: 1 (1 added to the suppression list)" in lines
    assert "auto-replies (ignored): 4" in lines
    assert "not recognised, left in place: 2" in lines
    assert "not verified or not readable, for a person (nothing changed): 1" in lines
    # The messages left for a person are named, with why.
    assert "from lee.social@example.net" in first.output
    assert "no recipient with a status code could be read" in first.output
    assert "from robin.care@example.com" in first.output
    assert "does not carry the signed reference of our unsubscribe link" in first.output

    # The ledger file records every event, the issue it answered, and what it suppressed.
    settings = open_project(project_dir).settings
    events = ledger_events(settings.ledger_path)
    by_address = {(e["kind"], e["address"]): e for e in events}
    gone = by_address[("hard-bounce", "gone@example.com")]
    assert (gone["status"], gone["issue"], gone["suppressed"]) == ("5.1.1", ISSUE, 1)
    slow = by_address[("soft-bounce", "slow@example.net")]
    assert (slow["status"], slow["action"], slow["suppressed"]) == ("4.4.1", "delayed", 0)
    assert sum(1 for e in events if e["kind"] == "auto-reply") == 4

    # Running again changes nothing: same list, same ledger, everything skipped.
    csv_bytes = (project_dir / "recipients" / "suppressed.csv").read_bytes()
    second = run(project_dir, "--maildir", str(maildir))
    assert second.exit_code == 0, second.output
    assert (project_dir / "recipients" / "suppressed.csv").read_bytes() == csv_bytes
    assert ledger_events(settings.ledger_path) == events
    assert "already processed: 23 (skipped)" in second.output.splitlines()
    assert "hard bounces: 0 (0 added to the suppression list)" in second.output.splitlines()
    assert "not recognised, left in place: 2" in second.output.splitlines()


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(
    sent_corpus: Path, tmp_path: Path
) -> None:
    project_dir = sent_corpus
    maildir = make_maildir(tmp_path / "returned")
    csv_bytes = (project_dir / "recipients" / "suppressed.csv").read_bytes()
    ledger_path = open_project(project_dir).settings.ledger_path

    dry = run(project_dir, "--maildir", str(maildir), "--dry-run")

    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("dry run: nothing changed")
    assert "hard bounces: 8 (8 would be added to the suppression list)" in dry.output
    assert (project_dir / "recipients" / "suppressed.csv").read_bytes() == csv_bytes
    assert "inbox_messages" not in _tables(ledger_path)  # not even the inbox's tables
    assert len(list(mailbox.Maildir(maildir, create=False).keys())) == 25

    # The dry run recorded nothing: a real run still acts on everything.
    real = run(project_dir, "--maildir", str(maildir))
    assert "hard bounces: 8 (8 added to the suppression list)" in real.output


def test_an_address_already_on_the_list_keeps_its_row(sent_corpus: Path, tmp_path: Path) -> None:
    project_dir = sent_corpus
    maildir = make_maildir(tmp_path / "returned", ["postfix-dsn-user-unknown.eml"])
    assert (
        CliRunner()
        .invoke(
            cli,
            ["--root", str(project_dir), "unsubscribe", "Gone@Example.com", "--reason", "manual"],
        )
        .exit_code
        == 0
    )
    before = suppressed_rows(project_dir)

    result = run(project_dir, "--maildir", str(maildir))

    assert "hard bounces: 1 (0 added to the suppression list)" in result.output
    assert suppressed_rows(project_dir) == before


def test_json_output_is_only_json_with_counts_and_each_item(
    sent_corpus: Path, tmp_path: Path
) -> None:
    project_dir = sent_corpus
    maildir = make_maildir(tmp_path / "returned")
    result = run(project_dir, "--maildir", str(maildir), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dry_run"] is False
    assert data["counts"] == {
        "hard-bounce": 8,
        "policy-bounce": 4,
        "soft-bounce": 2,
        "complaint": 3,
        "unsubscribe": 1,
        "auto-reply": 4,
        "suppressed": 12,
        "already_processed": 0,
        "unclassified": 2,
        "unverified": 1,
        "unreadable": 0,
        "refused": 0,
    }
    left = [i for i in data["items"] if i["outcome"] == "left"]
    assert {i["from"] for i in left} == {"lee.social@example.net", "MAILER-DAEMON@mail.example.org"}
    [unverified] = [i for i in data["items"] if i["outcome"] == "unverified"]
    assert unverified["from"] == "robin.care@example.com"
    assert unverified["suppressed"] == []
    gmail = next(
        i for i in data["items"] if i["subject"] == "Delivery Status Notification (Failure)"
    )
    assert gmail["events"][0]["issue"] == ISSUE
    assert gmail["suppressed"] == ["nobody@example.com"]


def test_a_hidden_complainant_is_found_in_the_delivery_ledger(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_with_test_secret(monkeypatch)
    record_sent(project_dir, ["hidden@example.org"])
    maildir = make_maildir(tmp_path / "returned", ["redacted-complaint.eml"])

    result = run(project_dir, "--maildir", str(maildir))

    assert "complaints: 1 (1 added to the suppression list)" in result.output
    assert ("hidden@example.org", "complaint") in {
        (r["email"], r["reason"]) for r in suppressed_rows(project_dir)
    }


def test_an_mbox_file_is_read_too(sent_corpus: Path, tmp_path: Path) -> None:
    project_dir = sent_corpus
    path = tmp_path / "returned.mbox"
    box = mailbox.mbox(path, create=True)
    for name in ("exim-dsn-failed.eml", "auto-reply-exchange-oof.eml"):
        box.add((FIXTURES / name).read_bytes())
    box.close()
    result = run(project_dir, "--mbox", str(path))
    assert result.exit_code == 0, result.output
    assert "hard bounces: 1 (1 added to the suppression list)" in result.output
    assert "auto-replies (ignored): 1" in result.output


def test_a_folder_that_is_not_a_maildir_is_refused_by_name(
    project_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "Downloads"
    folder.mkdir()
    result = run(project_dir, "--maildir", str(folder))
    assert result.exit_code == 1
    assert f"{folder} is not a Maildir" in result.output
    assert "Traceback" not in result.output


def test_a_file_that_is_not_an_mbox_is_refused_with_its_place(
    project_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "bounces.txt"
    path.write_text("Subject: hello\n\nnot an mbox\n", encoding="utf-8")
    result = run(project_dir, "--mbox", str(path))
    assert result.exit_code == 1
    assert f"{path}:1:1: not an mbox file" in result.output


def test_only_one_source_at_a_time(project_dir: Path, tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "returned", [])
    result = run(project_dir, "--maildir", str(maildir), "--provider", "postmark")
    assert result.exit_code == 2
    assert "choose one of --maildir, --mbox and --provider" in result.output


def test_without_an_imap_server_it_says_what_to_set(project_dir: Path) -> None:
    result = run(project_dir)
    assert result.exit_code == 1
    assert "no IMAP server is set up" in result.output
    assert "--maildir" in result.output


def test_an_imap_password_in_the_settings_file_is_refused_with_its_line(
    project_dir: Path,
) -> None:
    settings = project_dir / "newsletter.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text + "\ninbox:\n  imap:\n    host: imap.example.org\n    password: hunter2-secret\n",
        encoding="utf-8",
    )
    line = len(text.splitlines()) + 5
    result = run(project_dir)
    assert result.exit_code == 1
    assert (
        f"newsletter.yaml:{line}:5: `inbox.imap.password` looks like a secret; "
        "set NEWSLETTER_IMAP_PASSWORD in the environment instead"
    ) in result.output
    assert "hunter2-secret" not in result.output


def test_cron_prints_an_inbox_line_that_runs(project_dir: Path, tmp_path: Path) -> None:
    # The inbox job is printed once a bounce mailbox is set up.
    output = (
        CliRunner()
        .invoke(
            cli, ["--root", str(project_dir), "cron"], env={"NEWSLETTER_IMAP_HOST": "imap.invalid"}
        )
        .output
    )
    setup = cron_setup(open_project(project_dir), env_file=tmp_path / "secrets.env")
    fields = setup.inbox_crontab_line.split(" ", 5)
    assert fields[:5] == ["*/15", "*", "*", "*", "*"]
    assert shlex.join(newsletter_command()) + " inbox" in fields[5]
    assert "newsletter inbox" in output and "*/15 * * * *" in output

    # From cron's bare environment it runs `newsletter inbox` in the project, logging to cron.log.
    bare_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    if os.environ.get("PYTHONPATH"):  # a checkout under test, as HELPERS.md runs them
        bare_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    finished = subprocess.run(
        ["/bin/sh", "-c", fields[5].replace("\\%", "%")],
        env=bare_env,
        cwd="/",
        check=False,
    )
    assert finished.returncode == 1  # no IMAP server is set up in the sample project
    log = (project_dir / "var" / "cron.log").read_text(encoding="utf-8")
    assert "no IMAP server is set up" in log


def test_a_list_saved_by_excel_takes_the_inbox_suppressions_in_its_own_dialect(
    sent_corpus: Path, tmp_path: Path
) -> None:
    path = sent_corpus / "recipients" / "suppressed.csv"
    saved = "\ufeffEmail;Date;Reason\r\nk.murphy@example.com;2023-01-04;manual\r\n"
    path.write_bytes(saved.encode("utf-8"))
    maildir = make_maildir(tmp_path / "returned", ["postfix-dsn-user-unknown.eml"])

    result = run(sent_corpus, "--maildir", str(maildir))

    assert result.exit_code == 0, result.output
    text = path.read_bytes().decode("utf-8")
    assert text.startswith(saved)
    assert text[len(saved) :] == f"gone@example.com;{date.today().isoformat()};hard-bounce\r\n"


def test_a_dry_run_without_a_ledger_creates_none(project_dir: Path, tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "returned")
    ledger_path = open_project(project_dir).settings.ledger_path
    dry = run(project_dir, "--maildir", str(maildir), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert not ledger_path.exists()  # not even an empty ledger file
