"""`bounce_address`: the SMTP envelope sender, so bounces reach the mailbox `newsletter inbox` reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.support.smtp import SmtpTestServer

ISSUE = "2023-05-panel-reports"
BOUNCES = "bounces@example.org"


def _send(project_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "send", ISSUE, "--send", "--yes", "--rate", "0"]
    )
    assert result.exit_code == 0, result.output


def test_bounces_go_to_the_bounce_address_while_readers_see_the_from_address(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.configure(monkeypatch)
    settings_path = project_dir / "newsletter.yaml"
    settings_path.write_text(
        settings_path.read_text(encoding="utf-8") + f"bounce_address: {BOUNCES}\n",
        encoding="utf-8",
    )
    _send(project_dir)
    assert len(smtp_server.messages) == 67
    for received in smtp_server.messages:
        assert received.mail_from == BOUNCES
        assert received.message["From"].addresses[0].addr_spec == "comms@example.org"
        assert not [h for h, v in received.message.items() if BOUNCES in str(v)]
        # The receiving server writes Return-Path from MAIL FROM; a message never carries one.
        assert "Return-Path" not in received.message


def test_without_a_bounce_address_bounces_go_to_the_from_address(
    project_dir: Path, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.configure(monkeypatch)
    _send(project_dir)
    assert {m.mail_from for m in smtp_server.messages} == {"comms@example.org"}


def test_a_bounce_address_that_is_not_an_address_is_reported_with_its_line(
    project_dir: Path,
) -> None:
    settings_path = project_dir / "newsletter.yaml"
    lines = settings_path.read_text(encoding="utf-8").splitlines()
    settings_path.write_text("\n".join([*lines, "bounce_address: bounces at example.org", ""]))
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "validate"])
    assert result.exit_code == 1
    assert f"newsletter.yaml:{len(lines) + 1}:17:" in result.output
    assert "`bounces at example.org` is not a valid email address" in result.output
