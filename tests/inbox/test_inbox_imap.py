"""`newsletter inbox` against a real Dovecot IMAP server over verified TLS."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from email import message_from_bytes
from pathlib import Path

import pytest

from newsletter.core.errors import ConfigError
from newsletter.core.project import open_project
from newsletter.core.settings import Secret
from newsletter.inbox.run import process_mailbox
from newsletter.inbox.settings import ImapSettings
from newsletter.inbox.sources import NEEDS_A_PERSON_FOLDER, ImapSource
from tests.support.imap import DovecotServer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "inbox"
DELIVERED = [
    "postfix-dsn-user-unknown.eml",
    "exchange-online-ndr.eml",
    "gmail-dsn-delay.eml",
    "arf-abuse-complaint.eml",
    "auto-reply-exchange-oof.eml",
    "unsubscribe-mailto-link.eml",
    "unsubscribe-plain-request.eml",  # no signed reference: for a person
    "human-reply.eml",
]


def newsletter(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, with the environment the test set up."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), "inbox", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )


def ledger_tables(ledger_path: Path) -> set[str]:
    with closing(sqlite3.connect(f"{ledger_path.as_uri()}?mode=ro", uri=True)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def subjects(messages: list[bytes]) -> list[str]:
    return sorted(" ".join(str(message_from_bytes(m)["Subject"]).split()) for m in messages)


@pytest.fixture
def filled(dovecot: DovecotServer, sent_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project that sent the corpus's issue, pointed at Dovecot, whose INBOX holds some of it."""
    project_dir = sent_corpus
    for name in DELIVERED:
        dovecot.append("INBOX", (FIXTURES / name).read_bytes())
    dovecot.configure(monkeypatch, project_dir)
    return project_dir


def test_processed_messages_move_to_their_folder_and_the_rest_stay(
    dovecot: DovecotServer, filled: Path
) -> None:
    first = newsletter(filled)

    assert first.returncode == 0, first.stderr
    assert "hard bounces: 2 (2 added to the suppression list)" in first.stdout
    assert "delayed or temporary failures (recorded, not suppressed): 1" in first.stdout
    assert "complaints: 1 (1 added" in first.stdout
    assert "unsubscribe requests: 1 (1 added" in first.stdout
    assert "auto-replies (ignored): 1" in first.stdout
    assert "not recognised, left in place: 1" in first.stdout
    assert "not verified or not readable, for a person (nothing changed): 1" in first.stdout
    # Only the person's reply is left in the inbox; everything acted on was moved, and
    # the request that proved nothing waits for a person in a folder of its own.
    assert subjects(dovecot.messages("INBOX")) == [
        "Re: News Update, May 2023: reports from the Child Safeguarding Practice Review Panel"
    ]
    assert len(dovecot.messages("Processed")) == 6
    assert subjects(dovecot.messages(NEEDS_A_PERSON_FOLDER)) == ["Please take me off this list"]
    assert dovecot.seen_flags("INBOX") == [False]  # reading did not mark it read
    suppressed = (filled / "recipients" / "suppressed.csv").read_text(encoding="utf-8")
    for line in (
        "gone@example.com",
        "moved@example.com",
        "annoyed@example.com,",
        "oldbox@example.net",
    ):
        assert line in suppressed
    assert "busy@example.com" not in suppressed
    assert "robin.care@example.com" not in suppressed

    # Again: nothing new, nothing moved, nothing added.
    before = (filled / "recipients" / "suppressed.csv").read_bytes()
    second = newsletter(filled)
    assert second.returncode == 0, second.stderr
    assert "hard bounces: 0" in second.stdout
    assert "not recognised, left in place: 1" in second.stdout
    assert (filled / "recipients" / "suppressed.csv").read_bytes() == before
    assert len(dovecot.messages("INBOX")) == 1
    assert len(dovecot.messages("Processed")) == 6


def test_a_message_recorded_before_a_crash_is_moved_but_not_acted_on_again(
    dovecot: DovecotServer, filled: Path
) -> None:
    assert newsletter(filled).returncode == 0
    # The same bounce arrives again (or the move was lost when the run was killed).
    dovecot.append("INBOX", (FIXTURES / "postfix-dsn-user-unknown.eml").read_bytes())
    before = (filled / "recipients" / "suppressed.csv").read_bytes()

    again = newsletter(filled)

    assert "already processed: 1 (skipped)" in again.stdout
    assert (filled / "recipients" / "suppressed.csv").read_bytes() == before
    assert len(dovecot.messages("INBOX")) == 1  # only the person's reply
    assert len(dovecot.messages("Processed")) == 7


def test_a_dry_run_moves_nothing_and_suppresses_nobody(
    dovecot: DovecotServer, filled: Path
) -> None:
    before = (filled / "recipients" / "suppressed.csv").read_bytes()

    dry = newsletter(filled, "--dry-run", "--format", "json")

    assert dry.returncode == 0, dry.stderr
    assert '"dry_run": true' in dry.stdout
    assert (filled / "recipients" / "suppressed.csv").read_bytes() == before
    assert len(dovecot.messages("INBOX")) == len(DELIVERED)
    assert dovecot.messages("Processed") == []
    assert "inbox_messages" not in ledger_tables(filled / "var" / "ledger.sqlite3")


def test_an_untrusted_certificate_is_refused_and_nothing_is_read(
    dovecot: DovecotServer, filled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")  # the test CA is no longer trusted

    result = newsletter(filled)

    assert result.returncode == 1
    assert "did not show a certificate we can trust" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(dovecot.messages("INBOX")) == len(DELIVERED)


def test_a_wrong_password_is_reported_without_showing_it(
    dovecot: DovecotServer, filled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "not-the-Right-one-42")

    result = newsletter(filled)

    assert result.returncode == 1
    assert "refused the login for bounces@example.org" in result.stderr
    assert "NEWSLETTER_IMAP_PASSWORD" in result.stderr
    assert "not-the-Right-one-42" not in result.stderr + result.stdout


def test_the_library_reads_imap_with_an_explicit_context(
    dovecot: DovecotServer, sent_corpus: Path
) -> None:
    project_dir = sent_corpus
    dovecot.append("INBOX", (FIXTURES / "gmail-dsn-failure.eml").read_bytes())
    settings = ImapSettings(
        host=dovecot.host,
        port=dovecot.port,
        folder="INBOX",
        processed_folder="Processed bounces",
        username=dovecot.username,
        password=Secret(dovecot.password),
    )
    source = ImapSource(settings, ssl_context=dovecot.ssl_context())
    try:
        report = process_mailbox(open_project(project_dir), source)
    finally:
        source.close()
    assert report.suppressed == ["nobody@example.com"]
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages('"Processed bounces"')) == 1


def test_a_processed_folder_the_server_cannot_make_is_named(
    dovecot: DovecotServer, sent_corpus: Path
) -> None:
    project_dir = sent_corpus
    dovecot.append("INBOX", (FIXTURES / "gmail-dsn-failure.eml").read_bytes())
    settings = ImapSettings(
        host=dovecot.host,
        port=dovecot.port,
        processed_folder="Done/Bounces",  # Dovecot's Maildir++ names refuse "/"
        username=dovecot.username,
        password=Secret(dovecot.password),
    )
    source = ImapSource(settings, ssl_context=dovecot.ssl_context())
    try:
        with pytest.raises(ConfigError, match="could not create the folder `Done/Bounces`"):
            process_mailbox(open_project(project_dir), source)
    finally:
        source.close()
    # The suppression was made and recorded before the move failed; the message stays.
    assert len(dovecot.messages("INBOX")) == 1


def test_a_missing_folder_is_named(dovecot: DovecotServer) -> None:
    settings = ImapSettings(
        host=dovecot.host,
        port=dovecot.port,
        folder="Bounces",
        username=dovecot.username,
        password=Secret(dovecot.password),
    )
    with pytest.raises(ConfigError, match="has no folder `Bounces`"):
        ImapSource(settings, ssl_context=dovecot.ssl_context())
