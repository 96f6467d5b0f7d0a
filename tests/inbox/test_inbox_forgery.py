"""Anyone can mail the inbox: only what proves it answers our message to that address changes the list.

Every message here is what an outsider can send (a DSN, an ARF report, a
"MAILER-DAEMON" text, a mail to the unsubscribe address); each is read by the
real `newsletter inbox` from a Maildir, against a real ledger.
"""

from __future__ import annotations

import csv
import json
import mailbox
from pathlib import Path

from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core.signing import UNSUBSCRIBE, address_token, return_path_token
from newsletter.inbox.dsn import RECIPIENT_BLOCK_LIMIT
from newsletter.inbox.run import ledger_events
from newsletter.ledger.inbox_records import read_recorded_events, read_unverified_events
from tests.fixtures.inbox.sign_fixtures import LIST_ID
from tests.inbox.sent import our_message_id, record_sent
from tests.support.project import SAMPLE_ISSUE, UNSUBSCRIBE_SECRET

FIXTURES = Path(__file__).parents[1] / "fixtures" / "inbox"
VICTIM = "j.okafor@example.org"  # on the list; never sent anything back


def run(project_dir: Path, maildir: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--root", str(project_dir), "inbox", "--maildir", str(maildir), *args]
    )


def maildir_of(path: Path, *messages: bytes) -> Path:
    box = mailbox.Maildir(path, create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return path


def suppressed(project_dir: Path) -> set[str]:
    with (project_dir / "recipients" / "suppressed.csv").open(encoding="utf-8") as handle:
        return {row["email"].lower() for row in csv.DictReader(handle)}


def dsn(
    *recipients: str,
    to: str = "bounces@example.org",
    original_id: str | None = None,
    sender: str = "attacker@evil.example",
) -> bytes:
    """A well-formed RFC 3464 report, as anyone can write one."""
    blocks = "".join(
        f"Final-Recipient: rfc822; {r}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
        for r in recipients
    )
    returned = f"Message-ID: {original_id}\n" if original_id else ""
    return (
        (
            f"From: {sender}\nTo: {to}\nSubject: Undelivered Mail Returned to Sender\n"
            "MIME-Version: 1.0\nMessage-ID: <forged.{n}@evil.example>\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
            "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
            "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; evil.example\n\n"
            f"{blocks}"
            "--B\nContent-Type: text/rfc822-headers\n\n"
            f"From: comms@example.org\nTo: {recipients[0]}\n{returned}Subject: News\n\n"
            "--B--\n"
        )
        .replace("{n}", str(abs(hash((recipients, to, original_id)))))
        .encode()
    )


def test_a_forged_dsn_naming_someone_on_the_list_changes_nothing(
    sent_corpus: Path, tmp_path: Path
) -> None:
    record_sent(sent_corpus, [VICTIM])
    # Plain bounce address, no Message-ID; then the old unkeyed Message-ID anyone can compute.
    old_scheme = our_message_id(VICTIM).replace(
        our_message_id(VICTIM).split(".")[-1].split("@")[0], "0" * 32
    )
    maildir = maildir_of(tmp_path / "box", dsn(VICTIM), dsn(VICTIM, original_id=old_scheme))

    result = run(sent_corpus, maildir)

    assert result.exit_code == 0, result.output
    assert VICTIM not in suppressed(sent_corpus)
    assert "hard bounces: 0 (0 added to the suppression list)" in result.output
    assert "not verified or not readable, for a person (nothing changed): 2" in result.output
    assert "carries none of our signed Message-IDs or return paths" in result.output
    assert "Traceback" not in result.output
    # Recorded for a person, never as a bounce the report would show.
    ledger_path = sent_corpus / "var" / "ledger.sqlite3"
    events = ledger_events(ledger_path)
    assert [(e["kind"], e["address"], e["suppressed"]) for e in events] == [
        ("hard-bounce", VICTIM, 0),
        ("hard-bounce", VICTIM, 0),
    ]
    assert read_recorded_events(ledger_path) == []  # what `report` shows as bounced
    doubted = read_unverified_events(ledger_path)  # what it can list for a person
    assert [(e.kind, e.address, e.suppressed) for e in doubted] == [
        ("hard-bounce", VICTIM, False),
        ("hard-bounce", VICTIM, False),
    ]


def test_a_return_path_tag_only_vouches_for_the_address_it_was_signed_for(
    sent_corpus: Path, tmp_path: Path
) -> None:
    record_sent(sent_corpus, [VICTIM, "own@example.org"])
    # The attacker is on the list too, and bounces their own copy's tag against someone else.
    own_tag = return_path_token(UNSUBSCRIBE_SECRET, SAMPLE_ISSUE, "own@example.org")
    theirs = dsn(VICTIM, to=f"bounces+{own_tag}@example.org")
    victim_tag = return_path_token(UNSUBSCRIBE_SECRET, SAMPLE_ISSUE, VICTIM)
    genuine = dsn(VICTIM, to=f"bounces+{victim_tag}@example.org", sender="MAILER-DAEMON@mx.example")

    first = run(sent_corpus, maildir_of(tmp_path / "one", theirs))
    assert VICTIM not in suppressed(sent_corpus), first.output

    second = run(sent_corpus, maildir_of(tmp_path / "two", genuine))
    assert "hard bounces: 1 (1 added to the suppression list)" in second.output
    assert VICTIM in suppressed(sent_corpus)


def test_a_valid_signature_for_someone_never_sent_to_changes_nothing(
    sent_corpus: Path, tmp_path: Path
) -> None:
    # The tag is right, but the ledger never handed this issue to this address.
    stranger = "never.sent@example.org"
    tag = return_path_token(UNSUBSCRIBE_SECRET, SAMPLE_ISSUE, stranger)
    maildir = maildir_of(
        tmp_path / "box",
        dsn(stranger, to=f"bounces+{tag}@example.org", original_id=our_message_id(stranger)),
    )
    result = run(sent_corpus, maildir)
    assert stranger not in suppressed(sent_corpus)
    assert "(0 added" in result.output


def test_a_dsn_with_thousands_of_recipient_blocks_adds_nobody_and_stops_counting(
    sent_corpus: Path, tmp_path: Path
) -> None:
    people = [f"reader{n}@example.org" for n in range(4000)]
    record_sent(sent_corpus, people[:50])
    maildir = maildir_of(tmp_path / "box", dsn(*people))

    result = run(sent_corpus, maildir, "--format", "json")

    data = json.loads(result.output)
    assert data["counts"]["suppressed"] == 0
    [item] = data["items"]
    assert item["outcome"] == "unverified"
    assert len(item["events"]) == RECIPIENT_BLOCK_LIMIT  # bounded: not 4,000 rows
    assert not suppressed(sent_corpus) & set(people)


def test_a_forged_complaint_and_a_forged_mailer_daemon_text_change_nothing(
    sent_corpus: Path, tmp_path: Path
) -> None:
    record_sent(sent_corpus, ["a.begum@example.org"])
    arf = (FIXTURES / "arf-abuse-complaint.eml").read_text(encoding="utf-8")
    arf = arf.replace(our_message_id("annoyed@example.com"), "<x.1@evil.example>")
    arf = arf.replace("annoyed@example.com", "a.begum@example.org")
    text = (FIXTURES / "postfix-text-bounce-no-dsn.eml").read_text(encoding="utf-8")
    text = text.replace(our_message_id("closed@example.net"), "<y.2@evil.example>")
    text = text.replace("closed@example.net", "a.begum@example.org")
    text = text.replace(
        f"bounces+{return_path_token(UNSUBSCRIBE_SECRET, SAMPLE_ISSUE, 'closed@example.net')}",
        "bounces",
    )
    result = run(sent_corpus, maildir_of(tmp_path / "box", arf.encode(), text.encode()))

    assert result.exit_code == 0, result.output
    assert "a.begum@example.org" not in suppressed(sent_corpus)
    assert "complaints: 0 (0 added" in result.output
    assert "hard bounces: 0 (0 added" in result.output
    assert "not verified or not readable, for a person (nothing changed): 2" in result.output


def test_a_mailed_unsubscribe_acts_only_on_the_signed_reference_for_that_address(
    sent_corpus: Path, tmp_path: Path
) -> None:
    def request(subject: str, sender: str = "attacker@evil.example") -> bytes:
        return (
            f"From: {sender}\nTo: unsubscribe@example.org\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash(subject))}@evil.example>\n\nplease\n"
        ).encode()

    theirs = address_token(UNSUBSCRIBE_SECRET, UNSUBSCRIBE, LIST_ID, "own@example.org")
    mine = address_token(UNSUBSCRIBE_SECRET, UNSUBSCRIBE, LIST_ID, "a.begum@example.org")
    maildir = maildir_of(
        tmp_path / "box",
        request("Unsubscribe a.begum@example.org from Children's MARS Board News Update"),
        request(f"Unsubscribe a.begum@example.org from the news (ref {theirs})"),
    )
    forged = run(sent_corpus, maildir)
    assert "a.begum@example.org" not in suppressed(sent_corpus)
    assert "unsubscribe requests: 0 (0 added" in forged.output
    assert "not verified or not readable, for a person (nothing changed): 2" in forged.output

    # The link in her own footer: the subject as her mail client wrote it.
    genuine = maildir_of(
        tmp_path / "own",
        request(
            f"Unsubscribe a.begum@example.org from the news (ref {mine})", "a.begum@example.org"
        ),
    )
    result = run(sent_corpus, genuine)
    assert "unsubscribe requests: 1 (1 added" in result.output
    assert "a.begum@example.org" in suppressed(sent_corpus)


def test_without_a_secret_nothing_returned_is_applied_and_the_output_says_why(
    project_dir: Path, tmp_path: Path
) -> None:
    maildir = maildir_of(tmp_path / "box", (FIXTURES / "postfix-dsn-user-unknown.eml").read_bytes())
    result = run(project_dir, maildir)
    assert "gone@example.com" not in suppressed(project_dir)
    assert "NEWSLETTER_UNSUBSCRIBE_SECRET is not set" in result.output


def test_the_report_lists_what_proved_nothing_for_a_person_and_counts_nobody_as_bounced(
    sent_corpus: Path, tmp_path: Path
) -> None:
    record_sent(sent_corpus, [VICTIM])
    run(sent_corpus, maildir_of(tmp_path / "box", dsn(VICTIM)))

    table = CliRunner().invoke(cli, ["--root", str(sent_corpus), "report", SAMPLE_ISSUE])
    assert table.exit_code == 0, table.output
    assert "Came back but proved nothing, so nothing was changed" in table.output
    assert VICTIM in table.output.split("Came back but proved nothing")[1]
    assert "carries none of our signed Message-IDs" in table.output

    as_json = CliRunner().invoke(
        cli, ["--root", str(sent_corpus), "report", SAMPLE_ISSUE, "--format", "json"]
    )
    data = json.loads(as_json.output)
    assert [(e["kind"], e["address"]) for e in data["unverified"]] == [("hard-bounce", VICTIM)]
    assert {r["email"]: r["status"] for r in data["recipients"]}[VICTIM] == "sent"
