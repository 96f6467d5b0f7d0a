"""A message built to break the parser is listed for a person; the messages behind it are still read.

Each poison message made the standard library raise (IndexError, LookupError,
RecursionError) and, before, stopped `inbox` for good: on IMAP it stayed in
INBOX, so every later run stopped at it again.
"""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.inbox.sources import NEEDS_A_PERSON_FOLDER
from tests.support.imap import DovecotServer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "inbox"
GENUINE = "unsubscribe-mailto-link.eml"  # a signed request for oldbox@example.net


def malformed_message_id() -> bytes:
    return b"From: a@evil.example\nTo: bounces@example.org\nMessage-ID: <<<@>>> (\n\nhello\n"


def bogus_charset() -> bytes:
    return (
        b"From: MAILER-DAEMON@evil.example\nTo: bounces@example.org\nSubject: x\n"
        b"Message-ID: <bogus.1@evil.example>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        b"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
        b"Final-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: 5.1.1\n\n"
        b"--B\nContent-Type: text/rfc822-headers; charset=bogus\n\n"
        b"Message-ID: <a@b>\n\n--B--\n"
    )


def deep_multipart(depth: int = 3000) -> bytes:
    head = b"From: a@evil.example\nTo: bounces@example.org\nMessage-ID: <deep.2@evil.example>\n"
    opens = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth)
    )
    closes = b"".join(b"\n--b%d--\n" % i for i in reversed(range(depth)))
    return head + opens + b"Content-Type: text/plain\n\nhi\n" + closes


def deep_rfc822(depth: int = 2000) -> bytes:
    head = b"From: a@evil.example\nTo: bounces@example.org\nMessage-ID: <deep.3@evil.example>\n"
    return head + b"Content-Type: message/rfc822\n\n" * depth + b"Subject: in\n\nbody\n"


POISON = {
    "malformed Message-ID": malformed_message_id,
    "unknown charset": bogus_charset,
    "3,000-deep multipart": deep_multipart,
    "2,000-deep message/rfc822": deep_rfc822,
}


def newsletter(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), "inbox", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("poison", sorted(POISON))
def test_a_poison_message_is_listed_and_the_next_message_is_still_acted_on(
    poison: str, sent_corpus: Path, tmp_path: Path
) -> None:
    box = mailbox.Maildir(tmp_path / "box", create=True)
    box.add(POISON[poison]())
    box.add((FIXTURES / GENUINE).read_bytes())
    box.close()

    result = newsletter(sent_corpus, "--maildir", str(tmp_path / "box"))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "unsubscribe requests: 1 (1 added" in result.stdout
    assert "not verified or not readable, for a person (nothing changed): 1" in result.stdout
    assert "could not be read" in result.stdout
    suppressed = (sent_corpus / "recipients" / "suppressed.csv").read_text(encoding="utf-8")
    assert "oldbox@example.net" in suppressed
    assert "gone@example.com" not in suppressed


def test_on_imap_poison_moves_to_a_folder_for_a_person_and_never_blocks_again(
    dovecot: DovecotServer, sent_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for make in POISON.values():
        dovecot.append("INBOX", make())
    dovecot.append("INBOX", (FIXTURES / GENUINE).read_bytes())
    dovecot.configure(monkeypatch, sent_corpus)

    first = newsletter(sent_corpus)

    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    assert "unsubscribe requests: 1 (1 added" in first.stdout
    assert "<<<@>>> (" in first.stdout  # named by its Message-ID, for a person to find it
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages(NEEDS_A_PERSON_FOLDER)) == len(POISON)
    assert len(dovecot.messages("Processed")) == 1

    # The next run has nothing left to stop at.
    dovecot.append("INBOX", (FIXTURES / "postfix-dsn-user-unknown.eml").read_bytes())
    second = newsletter(sent_corpus)
    assert "hard bounces: 1 (1 added" in second.stdout


def test_what_an_outsider_wrote_cannot_drive_the_terminal(
    sent_corpus: Path, tmp_path: Path
) -> None:
    box = mailbox.Maildir(tmp_path / "box", create=True)
    box.add(
        b"From: \x1b]0;owned\x07x@evil.example\nTo: bounces@example.org\nSubject: \x1b[2J\n\nhi\n"
    )
    box.add(b"From: a@evil.example\nMessage-ID: <<<\x1b[31m@>>> (\n\nhi\n")
    box.close()
    result = newsletter(sent_corpus, "--maildir", str(tmp_path / "box"))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\\x1b" in result.stdout  # shown, escaped, for a person to see
