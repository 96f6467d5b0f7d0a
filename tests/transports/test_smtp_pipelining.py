"""SMTP PIPELINING (RFC 2920) and the DATA block, against a server that checks the client's writes.

aiosmtpd answers each command as it reads it, so it cannot tell a client
that waits for every reply from one that pipelines. The server here reads
MAIL, RCPT and DATA before it answers any of them: a client that waited for
the MAIL reply would hang until its timeout. It also keeps the exact bytes
of each DATA block, so dot-stuffing can be checked on the wire.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from newsletter.audience.lists import Recipient
from newsletter.core.project import Project
from newsletter.render.message import build_message_bytes
from newsletter.render.variants import PersonalisedEmail
from newsletter.transports.base import OutgoingMessage
from newsletter.transports.smtp.envelope import data_block
from newsletter.transports.smtp.send import SmtpTransport
from newsletter.transports.smtp.settings import SmtpSettings

SENDER = "newsupdate@mars-board.example.org"


@dataclass
class StrictPipeliningServer:
    """Offers PIPELINING and answers a transaction's commands only once all three arrived."""

    port: int = 0
    waited_for_replies: bool = False  # a client sent MAIL and then waited: it did not pipeline
    blocks: list[bytes] = field(default_factory=list)  # each DATA block as it came, dots and all
    refuse_rcpt: set[str] = field(default_factory=set)

    def serve(self, listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection, connection.makefile("rb") as incoming:
            connection.settimeout(5)
            connection.sendall(b"220 strict.test ESMTP\r\n")
            while True:
                line = incoming.readline()
                if not line or line.upper().startswith(b"QUIT"):
                    connection.sendall(b"221 bye\r\n")
                    return
                command = line.upper()
                if command.startswith(b"EHLO"):
                    connection.sendall(
                        b"250-strict.test\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n"
                    )
                elif command.startswith(b"RSET"):
                    connection.sendall(b"250 reset\r\n")
                elif command.startswith(b"MAIL"):
                    self._transaction(connection, incoming)
                else:
                    connection.sendall(b"502 not here\r\n")

    def _transaction(self, connection: socket.socket, incoming) -> None:
        connection.settimeout(1)
        try:
            rcpt, data = incoming.readline(), incoming.readline()
        except TimeoutError:
            self.waited_for_replies = True
            return
        connection.settimeout(5)
        address = rcpt.decode().split("<", 1)[1].split(">", 1)[0]
        if address in self.refuse_rcpt:
            connection.sendall(
                b"250 ok\r\n550 5.1.1 no such mailbox\r\n554 no valid recipients\r\n"
            )
            return
        assert data.upper().startswith(b"DATA"), data
        connection.sendall(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        block = b""
        while not block.endswith(b"\r\n.\r\n"):
            block += incoming.readline()
        self.blocks.append(block)
        connection.sendall(f"250 2.0.0 Ok: queued as Q{len(self.blocks)}\r\n".encode())


@pytest.fixture
def strict_server() -> Iterator[StrictPipeliningServer]:
    server = StrictPipeliningServer()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        server.port = listener.getsockname()[1]
        thread = threading.Thread(target=server.serve, args=(listener,), daemon=True)
        thread.start()
        yield server
        thread.join(timeout=10)


def _transport(port: int) -> SmtpTransport:
    return SmtpTransport(
        SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_seconds=5.0), SENDER
    )


def _message(project: Project, address: str, text: str) -> OutgoingMessage:
    """A message as a send builds it: `MessageBuilder`'s bytes, which no line starts with "."."""
    issue = project.load_issue("2023-05-panel-reports")
    email = PersonalisedEmail(issue.subject, f"<p>{text}</p>", text)
    data = build_message_bytes(project.settings, issue, Recipient(address, "Reader"), email)
    return OutgoingMessage(address, f"<{address}>", data, dot_free=True)


def test_mail_rcpt_and_data_go_in_one_write_when_the_server_offers_pipelining(
    strict_server, project
) -> None:
    transport = _transport(strict_server.port)
    messages = [_message(project, f"reader{n}@example.org", f"Issue {n}") for n in (1, 2, 3)]

    results = transport.send_batch(messages)
    transport.close()

    assert not strict_server.waited_for_replies
    assert [r.status for r in results] == ["sent"] * 3
    assert [r.provider_id for r in results] == ["Q1", "Q2", "Q3"]


def test_a_refused_recipient_in_a_pipeline_is_theirs_and_the_next_message_goes(
    strict_server, project
) -> None:
    strict_server.refuse_rcpt.add("gone@example.org")
    transport = _transport(strict_server.port)
    messages = [
        _message(project, address, "Issue")
        for address in ("gone@example.org", "reader@example.org")
    ]

    results = transport.send_batch(messages)
    transport.close()

    assert [r.status for r in results] == ["failed-permanent", "sent"]
    assert "550 5.1.1" in results[0].detail and "RCPT" in results[0].detail
    assert len(strict_server.blocks) == 1


def test_lines_starting_with_a_dot_are_doubled_on_the_wire_unless_none_can_start_so(
    strict_server, project
) -> None:
    """A message from elsewhere (a test copy, a resend) is dot-stuffed; the builder's needs none."""
    raw = b"Subject: dots\r\n\r\n.hidden line\r\n..two\r\nend.\r\n"
    transport = _transport(strict_server.port)

    transport.send_batch([OutgoingMessage("reader@example.org", "<dots@x>", raw)])
    transport.close()

    assert strict_server.blocks == [
        b"Subject: dots\r\n\r\n..hidden line\r\n...two\r\nend.\r\n.\r\n"
    ]


def test_the_data_block_matches_what_smtplib_would_send() -> None:
    import smtplib

    for raw in (b"a\r\n.b\r\n", b".first\r\nno end", b"plain\r\n", b""):
        expected = smtplib._quote_periods(raw)  # what SMTP.data sends, before its terminator
        if expected[-2:] != b"\r\n":
            expected += b"\r\n"
        assert data_block(raw) == expected + b".\r\n"
