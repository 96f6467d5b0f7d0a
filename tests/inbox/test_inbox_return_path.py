"""The signed return path, end to end: a real send over SMTP, a bounce delivered to its MAIL FROM.

A bounce that quotes nothing of our message (many do) can only be tied to
it by the address it was delivered to: the per-recipient MAIL FROM
`bounces+TOKEN@example.org` the send used. Each message has its own.
"""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.support.project import ISSUE, approve_sample, enable_one_click
from tests.support.smtp import SmtpTestServer

BOUNCES = "bounces@example.org"


def bounce_without_quote(delivered_to: str, recipient: str) -> bytes:
    """A Postfix-style text bounce that quotes nothing but names the failed address."""
    return (
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        f"To: {delivered_to}\nDelivered-To: {delivered_to}\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: <bounce.{abs(hash(recipient))}@mx.example.net>\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        f"<{recipient}>: host mx.example.net said: 550 5.1.1 User unknown\n"
    ).encode()


@pytest.fixture
def sent(project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample issue sent over SMTP with the signing key set and a bounce address."""
    enable_one_click(project_dir, monkeypatch)
    settings = project_dir / "newsletter.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8") + f"bounce_address: {BOUNCES}\n", encoding="utf-8"
    )
    approve_sample(project_dir)
    smtp_server.configure(monkeypatch)
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "send", ISSUE, "--send", "--yes", "--rate", "0"]
    )
    assert result.exit_code == 0, result.output
    return project_dir


def test_each_message_leaves_with_its_own_signed_return_path_and_its_bounce_is_believed(
    sent: Path, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    envelopes = {m.rcpt_tos[0].lower(): m.mail_from for m in smtp_server.messages}
    assert len(set(envelopes.values())) == len(envelopes) == 67  # one per recipient
    for mail_from in envelopes.values():
        local, _, domain = mail_from.partition("@")
        assert domain == "example.org" and local.startswith("bounces+")
        assert len(local) <= 64  # RFC 5321's limit on a local part
    [first, second] = sorted(envelopes)[:2]

    box = mailbox.Maildir(tmp_path / "returned", create=True)
    box.add(bounce_without_quote(envelopes[first], first))  # genuine
    box.add(bounce_without_quote(envelopes[first], second))  # first's tag, someone else named
    box.close()
    result = CliRunner().invoke(
        cli, ["--root", str(sent), "inbox", "--maildir", str(tmp_path / "returned")]
    )

    assert result.exit_code == 0, result.output
    assert "hard bounces: 1 (1 added to the suppression list)" in result.output
    suppressed = (sent / "recipients" / "suppressed.csv").read_text(encoding="utf-8").lower()
    assert first in suppressed
    assert second not in suppressed
