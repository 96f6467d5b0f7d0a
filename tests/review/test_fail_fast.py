"""A transport that cannot work stops the run at once, naming what to set; nobody is failed.

Each case is a real `send --send` through the CLI: the sample's placeholder
relay, a name that does not resolve, a refused connection, a refused
password (a real aiosmtpd server with AUTH), a missing API key and an API
that cannot be reached. In every case the run stops before the ledger holds
a single row, so nobody is marked failed or queued for a retry. `validate`
and the dry run warn about the same settings beforehand.
"""

from __future__ import annotations

import re
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner, Result

from newsletter.cli import cli
from tests.support.providers import FakePostmark
from tests.support.smtp import SmtpTestServer

ISSUE = "2023-05-panel-reports"
PASSWORD = "correct-horse-battery-staple"


def send(project_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--root", str(project_dir), "send", ISSUE, "--send", "--yes", *args]
    )


def ledger_rows(project_dir: Path) -> int:
    path = project_dir / "var" / "ledger.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'deliveries'").fetchall()
        return conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] if tables else 0
    finally:
        conn.close()


def one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


def test_the_samples_placeholder_relay_stops_the_run_without_a_lookup(
    project_dir: Path, loopback_only: list[str]
) -> None:
    line = one_line(send(project_dir, "--transport", "smtp"))
    assert line.startswith("newsletter: the SMTP host `smtp.example.org` is a placeholder")
    assert "NEWSLETTER_SMTP_HOST" in line
    assert ledger_rows(project_dir) == 0
    assert loopback_only == []  # not even a DNS question was asked


def test_a_host_that_does_not_resolve_stops_the_run(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, loopback_only: list[str]
) -> None:
    # `.test` names never resolve (RFC 6761); the network guard answers the lookup
    # as a resolver would (no such name) without asking anyone.
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "relay.partnership.test")
    line = one_line(send(project_dir, "--transport", "smtp"))
    assert "cannot connect to the SMTP server relay.partnership.test:587" in line
    assert "check NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT" in line
    assert ledger_rows(project_dir) == 0
    assert loopback_only == ["relay.partnership.test"]  # asked once, then stopped
    loopback_only.clear()  # the one refused lookup was this test's point


def test_a_refused_connection_stops_the_run(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(free_port()))
    line = one_line(send(project_dir, "--transport", "smtp"))
    assert "cannot connect to the SMTP server 127.0.0.1:" in line
    assert "Connection refused" in line and "NEWSLETTER_SMTP_PORT" in line
    assert ledger_rows(project_dir) == 0


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"comms", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


def test_a_refused_password_stops_the_run_and_is_never_shown(
    project_dir: Path, smtp_server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AUTH offered without TLS, so the login is checked without a certificate in the way.
    server: SmtpTestServer = smtp_server_factory(
        authenticator=_authenticator, auth_require_tls=False
    )
    server.configure(monkeypatch)
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", "comms")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong-" + PASSWORD)

    line = one_line(send(project_dir))

    assert "refused the username and password" in line
    assert "NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD" in line
    assert PASSWORD not in line
    assert server.messages == []
    assert ledger_rows(project_dir) == 0

    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)  # fixed: the same command works
    fixed = send(project_dir, "--rate", "0", "--limit", "3")
    assert fixed.exit_code == 0, fixed.output
    assert len(server.messages) == 3


def test_a_missing_api_key_stops_the_run(project_dir: Path) -> None:
    line = one_line(send(project_dir, "--transport", "postmark"))
    assert "set NEWSLETTER_POSTMARK_TOKEN in the environment" in line
    assert ledger_rows(project_dir) == 0


def test_an_api_that_cannot_be_reached_stops_the_run(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_POSTMARK_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", "server-token-not-to-be-shown")
    line = one_line(send(project_dir, "--transport", "postmark"))
    assert line.startswith("newsletter: cannot reach Postmark at http://127.0.0.1:")
    assert "NEWSLETTER_POSTMARK_URL" in line and "server-token" not in line
    assert ledger_rows(project_dir) == 0


def test_a_reachable_api_is_checked_without_sending_anything(
    project_dir: Path, postmark_server: FakePostmark, monkeypatch: pytest.MonkeyPatch
) -> None:
    postmark_server.configure(monkeypatch)
    result = send(project_dir, "--rate", "0")
    assert result.exit_code == 0, result.output
    assert len(postmark_server.sent_to()) == 67
    assert postmark_server.violations == []


# --- warned about beforehand -------------------------------------------------------------


def test_validate_warns_at_the_line_of_a_placeholder_relay(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "validate"])
    assert result.exit_code == 0, result.output  # a warning: content can be checked meanwhile
    settings_path = project_dir.resolve() / "newsletter.yaml"
    line = next(
        n
        for n, text in enumerate(settings_path.read_text("utf-8").splitlines(), 1)
        if text.strip().startswith("host: smtp.example.org")
    )
    about_settings = [o for o in result.output.splitlines() if o.startswith(str(settings_path))]
    assert len(about_settings) == 1, result.output
    assert re.match(
        rf"{re.escape(str(settings_path))}:{line}:\d+: warning: the SMTP host "
        r"`smtp.example.org` is a placeholder .*NEWSLETTER_SMTP_HOST",
        about_settings[0],
    ), about_settings


def test_the_dry_run_warns_about_a_missing_api_key(project_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "send", ISSUE, "--transport", "mailjet"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "warning: the mailjet transport has no API key: set NEWSLETTER_MAILJET_API_KEY and "
        "NEWSLETTER_MAILJET_SECRET_KEY in the environment"
    ) in result.stderr
    assert "nothing was sent" in result.stdout


def test_the_configured_outbox_needs_nothing_and_warns_about_nothing(project_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "validate"])
    assert result.exit_code == 0, result.output
    assert "newsletter.yaml:" not in result.output
    dry = CliRunner().invoke(cli, ["--root", str(project_dir), "send", ISSUE])
    assert dry.exit_code == 0 and "warning" not in dry.stderr
