"""`newsletter send`, `report` and `retry` end to end, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.audience.lists import read_suppressed
from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.core.settings import read_settings
from newsletter.delivery.send import RECORD_EVERY
from newsletter.transports import TRANSPORT_NAMES
from tests.support.project import unapprove_sample
from tests.support.smtp import SmtpTestServer

ISSUE = "2023-05-panel-reports"
BRUISING = "Bruising in non-mobile infants"
BRUISING_AGENCIES = {"health", "childrens-social-care", "police", "education"}


def run(project_dir: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args], input=input)


def ledger_states(project_dir: Path) -> Counter[str]:
    conn = sqlite3.connect(project_dir / "var" / "ledger.sqlite3")
    states = Counter(state for (state,) in conn.execute("SELECT state FROM deliveries"))
    conn.close()
    return states


def agencies(project_dir: Path) -> dict[str, str]:
    """Each address (lower case) and its agency, from the sample lists."""
    import csv

    found: dict[str, str] = {}
    for path in sorted((project_dir / "recipients" / "lists").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                found.setdefault(row["email"].strip().lower(), row["agency"].strip().lower())
    return found


def quick_retries(project_dir: Path, max_attempts: int = 5) -> None:
    """Make back-off waits tiny, so a real CLI run retries without slowing the tests."""
    path = project_dir / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("base_delay_seconds: 2", "base_delay_seconds: 0.01")
    text = text.replace("max_attempts: 5", f"max_attempts: {max_attempts}")
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def smtp_project(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    smtp_server.configure(monkeypatch)
    quick_retries(project_dir)
    return project_dir


def test_dry_run_prints_the_plan_and_writes_nothing(project_dir: Path) -> None:
    result = run(project_dir, "send", ISSUE)
    assert result.exit_code == 0, result.output
    assert "Recipients: 67" in result.output
    assert "44  All sections (all-sections)" in result.output
    assert "23  Without: Bruising in non-mobile infants" in result.output
    assert "Suppressed: 4" in result.output and "Duplicates merged: 11" in result.output
    assert "Transport:  outbox" in result.output and "Rate:       10 a second" in result.output
    assert "nothing was sent" in result.output
    assert not (project_dir / "var").exists()
    assert not (project_dir / "outbox").exists()
    plan = json.loads(run(project_dir, "send", ISSUE, "--format", "json", "--rate", "0").stdout)
    assert plan["to_send"] == 67 and plan["rate"] == "no limit"
    assert not (project_dir / "var").exists()


def test_every_transport_in_the_settings_can_be_chosen_by_each_command(
    project_dir: Path,
) -> None:
    # The registry is the one list: the `transport` setting takes exactly its names.
    assert {"graph", "notify"} <= set(TRANSPORT_NAMES)
    for transport in TRANSPORT_NAMES:
        settings, problems = read_settings(project_dir, {"NEWSLETTER_TRANSPORT": transport})
        assert settings is not None and settings.transport == transport
        assert not [p for p in problems if p.is_error], transport
    _, problems = read_settings(project_dir, {"NEWSLETTER_TRANSPORT": "pigeon"})
    [refused] = [p for p in problems if p.is_error]
    assert f"choose one of {', '.join(TRANSPORT_NAMES)}" in refused.message
    for name in ("send", "retry", "dispatch"):
        command = cli.commands[name]
        option = next(p for p in command.params if p.name == "transport_name")
        assert tuple(option.type.choices) == TRANSPORT_NAMES, name  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", TRANSPORT_NAMES)
def test_verbose_dry_run_says_where_each_transport_would_deliver(
    project_dir: Path, transport: str
) -> None:
    result = run(project_dir, "--verbose", "send", ISSUE, "--transport", transport)
    assert result.exit_code == 0, result.output
    assert f"Delivery: {transport}: " in result.stderr
    assert f"Transport:  {transport} (" in result.stdout


@pytest.mark.usefixtures("one_click")
def test_send_delivers_one_message_per_person_with_their_variant(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(smtp_project, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert result.exit_code == 0, result.output
    assert "Sent 67; failed permanently 0" in result.output
    received = smtp_server.by_recipient()
    assert len(received) == 67 and all(len(copies) == 1 for copies in received.values())
    agency = agencies(smtp_project)
    message_ids = set()
    for address, (copy,) in received.items():
        msg = copy.message
        assert msg["To"].addresses[0].addr_spec.lower() == address
        assert msg["From"].addresses[0].addr_spec == "comms@example.org"
        assert msg["Subject"].startswith("News Update, May 2023")
        assert "<mailto:unsubscribe@example.org" in msg["List-Unsubscribe"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Id"].endswith("<news-update.childrens-mars.example.org>")
        message_ids.add(msg["Message-ID"])
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        assert text is not None and html is not None
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        gets_bruising = agency[address] in BRUISING_AGENCIES
        assert (BRUISING in text.get_content()) == gets_bruising, address
        assert (BRUISING in html.get_content()) == gets_bruising, address
    assert len(message_ids) == 67
    assert ledger_states(smtp_project) == {"sent": 67, "suppressed": 4}

    again = run(smtp_project, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert again.exit_code == 0 and "Sent 0" in again.output
    assert len(smtp_server.messages) == 67

    report = json.loads(run(smtp_project, "report", ISSUE, "--format", "json").stdout)
    assert report["counts"]["sent"] == 67 and report["complete"] is True
    assert report["per_segment"]["adults-social-care"]["sent"] == 10


def test_451_is_retried_and_delivered(smtp_project: Path, smtp_server: SmtpTestServer) -> None:
    smtp_server.fail("j.okafor@example.org", 451, times=2)
    result = run(smtp_project, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert result.exit_code == 0, result.output
    assert len(smtp_server.by_recipient()["j.okafor@example.org"]) == 1
    assert len(smtp_server.messages) == 67
    with sqlite3.connect(smtp_project / "var" / "ledger.sqlite3") as conn:
        state, attempts = conn.execute(
            "SELECT state, attempts FROM deliveries WHERE address_key = 'j.okafor@example.org'"
        ).fetchone()
    assert (state, attempts) == ("sent", 3)


def test_550_is_permanent_not_retried_and_suppressed(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    smtp_server.fail("j.okafor@example.org", 550)
    result = run(smtp_project, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert result.exit_code == 1
    assert "failed-permanent: j.okafor@example.org: 550" in result.output
    assert "added to suppressed.csv (hard bounce): j.okafor@example.org" in result.output
    assert len(smtp_server.messages) == 66
    assert ledger_states(smtp_project) == {"sent": 66, "failed-permanent": 1, "suppressed": 4}
    with sqlite3.connect(smtp_project / "var" / "ledger.sqlite3") as conn:
        (attempts,) = conn.execute(
            "SELECT attempts FROM deliveries WHERE state = 'failed-permanent'"
        ).fetchone()
    assert attempts == 1
    suppressed, _ = read_suppressed(smtp_project / "recipients" / "suppressed.csv")
    assert suppressed["j.okafor@example.org"].reason == "hard-bounce"
    report = run(smtp_project, "report", ISSUE)
    assert "j.okafor@example.org  failed-permanent  1" in report.output
    csv_report = run(smtp_project, "report", ISSUE, "--format", "csv").stdout
    assert "j.okafor@example.org,failed,550" in csv_report


def test_a_dropped_connection_is_reconnected(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    smtp_server.drop_connection_after(10, stage="RCPT")
    smtp_server.reply_421_on(30)
    result = run(
        smtp_project, "send", ISSUE, "--send", "--yes", "--rate", "0", "--concurrency", "1"
    )
    assert result.exit_code == 0, result.output
    assert len(smtp_server.by_recipient()) == 67
    assert smtp_server.sessions >= 3
    assert ledger_states(smtp_project) == {"sent": 67, "suppressed": 4}


def test_temporary_failures_left_over_are_sent_by_retry(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.configure(monkeypatch)
    quick_retries(project_dir, max_attempts=2)
    smtp_server.fail("j.okafor@example.org", 451, times=2)
    first = run(project_dir, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert first.exit_code == 1
    assert "newsletter retry 2023-05-panel-reports" in first.output
    assert ledger_states(project_dir)["failed-temporary"] == 1
    second = run(project_dir, "retry", ISSUE, "--rate", "0")
    assert second.exit_code == 0, second.output
    assert "Sent 1;" in second.output
    assert ledger_states(project_dir) == {"sent": 67, "suppressed": 4}
    assert len(smtp_server.by_recipient()["j.okafor@example.org"]) == 1


def test_send_asks_first_and_no_means_nothing_is_sent(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(smtp_project, "send", ISSUE, "--send", input="n\n")
    assert result.exit_code == 1
    assert "Send 2023-05-panel-reports to 67 people now?" in result.output
    assert "Aborted" in result.output
    assert smtp_server.messages == []
    assert not (smtp_project / "var" / "ledger.sqlite3").exists()
    yes = run(smtp_project, "send", ISSUE, "--send", "--limit", "5", "--rate", "0", input="y\n")
    assert yes.exit_code == 0, yes.output
    assert len(smtp_server.messages) == 5


def test_test_to_sends_one_copy_per_variant_and_records_nothing(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(smtp_project, "send", ISSUE, "--test-to", "me@example.org")
    assert result.exit_code == 0, result.output
    assert smtp_server.recipients() == ["me@example.org", "me@example.org"]
    subjects = [str(m.message["Subject"]) for m in smtp_server.messages]
    subject = open_project(smtp_project).load_issue(ISSUE).subject
    # Each subject says who gets that variant: the segments of its targeted section.
    assert subjects == [
        f"[TEST: health, childrens-social-care, police, education] {subject}",
        f"[TEST: everyone else] {subject}",
    ]
    bodies = [m.message.get_body(("plain",)).get_content() for m in smtp_server.messages]
    assert [BRUISING in b for b in bodies] == [True, False]
    assert not (smtp_project / "var").exists()


def test_test_copies_greet_a_sample_name_never_a_real_recipient(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(smtp_project, "send", ISSUE, "--test-to", "me@example.org")
    assert result.exit_code == 0, result.output
    real_names = set()
    for path in (smtp_project / "recipients" / "lists").glob("*.csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            real_names |= {row["name"].strip() for row in csv.DictReader(handle) if row["name"]}
    for copy in smtp_server.messages:
        text = copy.message.get_body(("plain",)).get_content()
        html = copy.message.get_body(("html",)).get_content()
        assert "Dear Sample Practitioner," in text
        assert copy.message["To"].addresses[0].display_name == "Sample Practitioner"
        assert not [name for name in real_names if name in text or name in html]


def test_test_to_takes_several_addresses_repeated_or_comma_separated(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(
        smtp_project,
        "send",
        ISSUE,
        "--test-to",
        "me@example.org",
        "--test-to",
        "editor@example.org, lead@example.org",
    )
    assert result.exit_code == 0, result.output
    assert Counter(smtp_server.recipients()) == {
        "me@example.org": 2,
        "editor@example.org": 2,
        "lead@example.org": 2,
    }
    assert len(result.output.splitlines()) == 6


@pytest.mark.parametrize("bad", ["not-an-address", "me@example.org,someone@", "me@@example.org"])
def test_a_bad_test_address_is_a_usage_error_and_nothing_is_sent(
    smtp_project: Path, smtp_server: SmtpTestServer, bad: str
) -> None:
    result = run(smtp_project, "send", ISSUE, "--test-to", bad)
    assert result.exit_code == 2, result.output
    assert "--test-to" in result.output and "is not a valid email address" in result.output
    assert smtp_server.messages == []


def test_an_outbox_test_copy_says_where_it_was_written(project_dir: Path) -> None:
    result = run(project_dir, "send", ISSUE, "--test-to", "me@example.org")
    assert result.exit_code == 0, result.output
    *lines, hint = result.output.splitlines()
    assert len(lines) == 2
    assert hint.endswith("See them as the recipients will: newsletter outbox --open")
    for line in lines:
        assert line.startswith("sent: test copy [TEST: ")
        written = Path(line.split(" -> ", 1)[1])
        assert written.parent == project_dir / "outbox" / "tests" / "new"  # apart from a send
        assert b"To: Sample Practitioner <me@example.org>" in written.read_bytes()


def test_test_copies_answer_in_json_when_asked(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(smtp_project, "send", ISSUE, "--test-to", "me@example.org", "--format", "json")
    assert result.exit_code == 0, result.output
    copies = json.loads(result.stdout)  # nothing but JSON on stdout
    assert copies["issue"] == ISSUE and copies["to"] == ["me@example.org"]
    assert [(c["variant"], c["label"], c["status"]) for c in copies["copies"]] == [
        ("all-sections", "health, childrens-social-care, police, education", "sent"),
        ("without-bruising-in-non-mobile-infants", "everyone else", "sent"),
    ]
    assert len(smtp_server.messages) == 2 and not (smtp_project / "var").exists()


def test_a_refused_test_copy_is_in_the_json_and_exits_1(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    smtp_server.fail("me@example.org", 550)
    result = run(smtp_project, "send", ISSUE, "--test-to", "me@example.org", "--format", "json")
    assert result.exit_code == 1
    copies = json.loads(result.stdout)
    assert {c["status"] for c in copies["copies"]} == {"failed-permanent"}
    assert all(c["detail"].startswith("550") for c in copies["copies"])


def test_a_json_send_without_yes_is_refused_before_anything_happens(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    # A script asking for JSON cannot answer the confirmation prompt, and the
    # human plan and prompt on stdout would spoil its JSON.
    result = run(smtp_project, "send", ISSUE, "--send", "--format", "json", input="y\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--yes" in result.stderr
    assert smtp_server.messages == []
    assert not (smtp_project / "var").exists()


def test_a_json_send_with_yes_prints_only_json(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    result = run(smtp_project, "send", ISSUE, "--send", "--yes", "--format", "json", "--rate", "0")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["issue"] == ISSUE and outcome["sent"] == 67 and outcome["failures"] == []
    assert len(smtp_server.messages) == 67


def test_an_issue_with_content_errors_is_refused(
    smtp_project: Path, smtp_server: SmtpTestServer
) -> None:
    path = smtp_project / "issues" / f"{ISSUE}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("title:", "titel:", 1), encoding="utf-8"
    )
    result = run(smtp_project, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 1
    assert "nothing was sent" in result.output
    assert f"{ISSUE}.yaml:" in result.output
    assert smtp_server.messages == []
    assert not (smtp_project / "var").exists()


def test_report_without_a_ledger_says_nothing_was_sent(project_dir: Path) -> None:
    result = run(project_dir, "report", ISSUE)
    assert result.exit_code == 1
    assert "nothing has been sent yet" in result.output


class SlowServer(SmtpTestServer):
    """Takes a while over each message, so a sender can be killed part-way."""

    delay = 0.08

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        reply: str = await super().handle_DATA(server, session, envelope)
        return reply


@pytest.mark.slow
def test_sigkill_mid_send_then_rerun_leaves_everyone_sent_exactly_once(
    project_dir: Path, smtp_server_factory: Callable[..., SmtpTestServer]
) -> None:
    server = SlowServer()
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
            "NEWSLETTER_SMTP_HOST": server.host,
            "NEWSLETTER_SMTP_PORT": str(server.port),
            "NEWSLETTER_SMTP_SECURITY": "none",
        }
        command = [
            sys.executable, "-m", "newsletter", "--root", str(project_dir),
            "send", ISSUE, "--send", "--yes", "--transport", "smtp", "--rate", "0",
        ]  # fmt: skip
        sender = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while len(server.messages) < 15 and time.monotonic() < deadline:
            assert sender.poll() is None, sender.stdout.read() if sender.stdout else ""
            time.sleep(0.02)
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait()
        if sender.stdout:
            sender.stdout.close()
        first_run = len(server.messages)
        assert 15 <= first_run < 67
        states = ledger_states(project_dir)
        assert states["sent"] < 67 and states["sent"] + states["sending"] >= first_run

        server.delay = 0
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert ledger_states(project_dir) == {"sent": 67, "suppressed": 4}
        received = server.by_recipient()
        assert len(received) == 67
        for copies in received.values():
            # A message in flight at the kill may arrive twice, but always with one Message-ID.
            assert len({c.message["Message-ID"] for c in copies}) == 1
        # Only messages sent but not yet recorded can go twice: at most one chunk per connection.
        duplicates = sum(len(c) - 1 for c in received.values())
        assert duplicates <= 2 * RECORD_EVERY
    finally:
        server.stop()


def test_send_refuses_an_issue_changed_since_approval_and_says_how_to_approve(
    project_dir: Path,
) -> None:
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("title: ", "title: Draft 2 of ", 1),
        encoding="utf-8",
    )
    for command in (["send", ISSUE, "--send", "--yes"], ["retry", ISSUE]):
        result = run(project_dir, *command)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"newsletter: {ISSUE}.yaml has changed since ")
        assert result.stderr.rstrip().endswith(
            f"the issue file; check it, then run: newsletter approve {ISSUE} --by NAME"
        )
    assert not (project_dir / "outbox").exists()
    assert not (project_dir / "var").exists()

    # Checking it needs no approval: the dry run says what --send would do, test copies go.
    dry = run(project_dir, "send", ISSUE)
    assert dry.exit_code == 0, dry.output
    assert "Approval:   changed since approval (the issue file)" in dry.stdout
    assert "--send will refuse it" in dry.stderr
    assert run(project_dir, "send", ISSUE, "--test-to", "me@example.org").exit_code == 0

    approved = run(project_dir, "approve", ISSUE, "--by", "Jo Bloggs")
    assert approved.exit_code == 0, approved.output
    sent = run(project_dir, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert sent.exit_code == 0, sent.output
    assert "Sent 67;" in sent.output


def test_send_refuses_an_issue_nobody_approved(project_dir: Path) -> None:
    unapprove_sample(project_dir)
    result = run(project_dir, "send", ISSUE, "--send", "--yes")
    assert result.exit_code == 1
    assert result.stderr == (
        f"newsletter: {ISSUE}.yaml is not approved; check it, then run: "
        f"newsletter approve {ISSUE} --by NAME\n"
    )
    assert not (project_dir / "outbox").exists()
