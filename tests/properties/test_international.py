"""International addresses and credentials, end to end through a real SMTP server (aiosmtpd).

`anna@bücher.example` has an internationalised domain: it travels as
`anna@xn--bcher-kva.example` and every server takes it. `jörg@example.org`
has a non-ASCII local part: only a server offering SMTPUTF8 can carry it, so
without one that person alone fails, permanently and with a clear reason.
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner, Result

from newsletter.audience.lists import Recipient
from newsletter.cli import cli
from newsletter.core.errors import DeliveryError
from newsletter.core.project import Project
from newsletter.render.message import PersonalisedEmail, build_message_bytes, parse_message
from newsletter.transports.base import OutgoingMessage
from newsletter.transports.postmark.send import PostmarkTransport
from newsletter.transports.smtp.send import SmtpTransport
from newsletter.transports.smtp.settings import SmtpSettings
from tests.support.providers import FakePostmark
from tests.support.smtp import SmtpTestServer

ISSUE = "2023-05-panel-reports"
IDN = "anna@bücher.example"
IDN_WIRE = "anna@xn--bcher-kva.example"
EAI = "jörg@example.org"
SEVEN = (
    ("a.okafor@example.org", "Ada Okafor"),
    (IDN, "Anna Müller"),
    (EAI, "Jörg Schmidt"),
    ("zoe.clarke@example.org", "Zoë Clarke"),
    ("c.oneill@example.com", "Ciarán O'Neill"),
    ("p.raman@example.org", "Priya Raman"),
    ("s.hughes@example.com", "Sam Hughes"),
)


def run(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), *args])


@pytest.fixture
def seven_dir(project_dir: Path) -> Path:
    """The sample project with one list of seven people, two of them with international addresses."""
    lists_dir = project_dir / "recipients" / "lists"
    header = "email,name,organisation,agency,role,district\n"
    for path in lists_dir.glob("*.csv"):
        path.write_text(header, encoding="utf-8")
    rows = "".join(
        f"{email},{name},Example Trust,health,practitioner,North\n" for email, name in SEVEN
    )
    (lists_dir / "comms.csv").write_text(header + rows, encoding="utf-8")
    return project_dir


def ledger_rows(project_dir: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(project_dir / "var" / "ledger.sqlite3") as conn:
        rows = conn.execute("SELECT email, state, last_error FROM deliveries").fetchall()
    return {email: (state, error) for email, state, error in rows}


def header_line(data: bytes, name: bytes) -> bytes:
    """One header line of a received message, exactly as it came over the wire."""
    head = data.split(b"\r\n\r\n", 1)[0]
    [line] = [h for h in head.split(b"\r\n") if h.startswith(name + b": ")]
    return line


def test_a_relay_without_smtputf8_gets_everyone_but_the_non_ascii_local_part(
    seven_dir: Path, smtp_server_factory: Callable[..., SmtpTestServer], monkeypatch
) -> None:
    server = smtp_server_factory(enable_SMTPUTF8=False)
    server.configure(monkeypatch)

    result = run(seven_dir, "send", ISSUE, "--send", "--yes", "--rate", "0")

    assert result.exit_code == 1, result.output  # some deliveries failed permanently
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert "Sent 6; failed permanently 1" in result.output
    delivered = sorted(server.recipients())
    expected = sorted(IDN_WIRE if email == IDN else email for email, _ in SEVEN if email != EAI)
    assert delivered == expected
    anna = server.by_recipient()[IDN_WIRE][0]
    assert (
        header_line(anna.data, b"To")
        == b"To: =?utf-8?q?Anna_M=C3=BCller?= <anna@xn--bcher-kva.example>"
    )
    assert str(anna.message["To"]) == "Anna Müller <anna@xn--bcher-kva.example>"
    assert anna.data.isascii()  # nothing in Anna's message needs SMTPUTF8

    rows = ledger_rows(seven_dir)
    state, reason = rows[EAI]
    assert state == "failed-permanent"
    assert EAI in reason and "SMTPUTF8" in reason and "does not offer it" in reason
    assert {s for e, (s, _) in rows.items() if e != EAI} == {"sent"}
    assert f"failed-permanent: {EAI}" in result.output
    report = run(seven_dir, "report", ISSUE)
    assert EAI in report.output and "SMTPUTF8" in report.output
    # Our relay's limit says nothing against the address: it stays on the list.
    suppressed = (seven_dir / "recipients" / "suppressed.csv").read_text(encoding="utf-8")
    assert EAI not in suppressed


def test_a_relay_with_smtputf8_gets_all_seven(
    seven_dir: Path, smtp_server_factory: Callable[..., SmtpTestServer], monkeypatch
) -> None:
    server = smtp_server_factory(enable_SMTPUTF8=True)
    server.configure(monkeypatch)

    result = run(seven_dir, "send", ISSUE, "--send", "--yes", "--rate", "0")

    assert result.exit_code == 0, result.output
    assert "Sent 7; failed permanently 0" in result.output
    received = server.by_recipient()
    assert sorted(received) == sorted(IDN_WIRE if e == IDN else e for e, _ in SEVEN)
    jorg = received[EAI][0]
    # RFC 6532: the address is UTF-8; the display name is still an RFC 2047 encoded word.
    to_line = header_line(jorg.data, b"To")
    assert to_line == "To: =?utf-8?q?J=C3=B6rg_Schmidt?= <jörg@example.org>".encode()
    assert str(jorg.message["To"]) == "Jörg Schmidt <jörg@example.org>"
    assert "Jörg" in jorg.message.get_body(("plain",)).get_content()
    assert header_line(received["zoe.clarke@example.org"][0].data, b"To") == (
        b"To: =?utf-8?q?Zo=C3=AB_Clarke?= <zoe.clarke@example.org>"
    )
    assert {state for state, _ in ledger_rows(seven_dir).values()} == {"sent"}


def test_the_outbox_takes_every_international_address(seven_dir: Path) -> None:
    result = run(seven_dir, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert result.exit_code == 0, result.output
    assert "Sent 7" in result.output
    to_lines = {
        header_line(path.read_bytes().replace(b"\n", b"\r\n"), b"To")
        for path in (seven_dir / "outbox" / "new").iterdir()
    }
    assert b"To: =?utf-8?q?Anna_M=C3=BCller?= <anna@xn--bcher-kva.example>" in to_lines
    assert "To: =?utf-8?q?J=C3=B6rg_Schmidt?= <jörg@example.org>".encode() in to_lines


def test_postmark_gets_the_idna_domain_and_never_crashes(
    make_outgoing: Callable[[list[str]], list[OutgoingMessage]], postmark_server: FakePostmark
) -> None:
    transport = PostmarkTransport(postmark_server.provider_settings())
    try:
        results = transport.send_batch(make_outgoing([IDN, EAI]))  # "Reader Nº1", "Reader Nº2"
    finally:
        transport.close()
    assert [r.ok for r in results] == [True, True]
    first, second = postmark_server.requests[0].json
    assert first["To"] == "=?utf-8?q?Reader_N=C2=BA1?= <anna@xn--bcher-kva.example>"
    assert second["To"] == "=?utf-8?q?Reader_N=C2=BA2?= <jörg@example.org>"


def test_an_international_sender_domain_is_idna_in_from_reply_to_and_message_id(
    project: Project,
) -> None:
    from dataclasses import replace

    settings = replace(project.settings, from_address="news@bücher.example")
    issue = replace(project.load_issue(ISSUE), reply_to="ideen@bücher.example")
    email = PersonalisedEmail(subject="Ünïcode", html="<p>x</p>", text="x\n")
    raw = build_message_bytes(settings, issue, Recipient(email=IDN, name="Anna"), email)
    assert raw.isascii()
    message = parse_message(raw)
    assert message["From"].addresses[0].addr_spec == "news@xn--bcher-kva.example"
    assert str(message["Reply-To"]) == "ideen@xn--bcher-kva.example"
    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert str(message["Subject"]) == "Ünïcode"


# -- a password with non-ASCII characters --------------------------------------

USERNAME = "newsletter"
PASSWORD = "Grüße-aus-Köln-2024"


class Authenticator:
    """Accepts USERNAME and PASSWORD as UTF-8 bytes; notes each mechanism that logged in."""

    def __init__(self) -> None:
        self.logged_in: list[str] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            USERNAME.encode(),
            PASSWORD.encode("utf-8"),
        )
        if ok:
            self.logged_in.append(mechanism)
        return AuthResult(success=ok, handled=False)


def _auth_server(
    factory: Callable[..., SmtpTestServer], authenticator: Authenticator, **kwargs: object
) -> SmtpTestServer:
    # Without TLS (aiosmtpd then cannot *require* AUTH) to keep the test small;
    # the transport logs in whenever it has a username and password.
    return factory(authenticator=authenticator, auth_require_tls=False, **kwargs)


def _send(settings: SmtpSettings, outgoing: list[OutgoingMessage]) -> list[str]:
    transport = SmtpTransport(settings, "comms@example.org")
    try:
        return [r.status for r in transport.send_batch(outgoing)]
    finally:
        transport.close()


@pytest.mark.parametrize("mechanisms_left_out", [[], ["PLAIN"]], ids=["PLAIN", "LOGIN"])
def test_a_non_ascii_password_logs_in_as_utf8(
    smtp_server_factory, make_outgoing, mechanisms_left_out: list[str]
) -> None:
    authenticator = Authenticator()
    server = _auth_server(
        smtp_server_factory, authenticator, auth_exclude_mechanism=mechanisms_left_out
    )
    settings = server.settings(username=USERNAME, password=PASSWORD)
    assert _send(settings, make_outgoing(2)) == ["sent", "sent"]
    assert authenticator.logged_in == ["LOGIN" if mechanisms_left_out else "PLAIN"]
    assert len(server.messages) == 2


def test_a_wrong_non_ascii_password_names_no_character_of_it(
    smtp_server_factory, make_outgoing
) -> None:
    server = _auth_server(smtp_server_factory, Authenticator())
    wrong = "Straße-Ärger-ßüöä"
    settings = server.settings(username=USERNAME, password=wrong)
    with pytest.raises(DeliveryError) as caught:
        _send(settings, make_outgoing(1))
    shown = str(caught.value) + "".join(traceback.format_exception(caught.value))
    assert "refused the username and password" in shown
    assert not any(ch in shown for ch in set(wrong) if not ch.isascii())
    for hint in ("\\xdf", "\\xc4", "\\xfc", "UnicodeEncodeError", "codec", "Stra"):
        assert hint not in shown
    assert server.messages == []
