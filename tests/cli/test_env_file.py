"""One environment file for secrets, read by every command as cron and systemd read it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.core.envfile import read_env_file
from tests.support.project import SAMPLE_ISSUE

RELAY_LINES = 'NEWSLETTER_TRANSPORT=smtp\nexport NEWSLETTER_SMTP_HOST="relay.team.example"\n'


def env_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config" / "newsletter.env"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def run_newsletter(
    project_dir: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own, as a comms officer types it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_command_typed_by_hand_reads_the_env_file(project_dir: Path, tmp_path: Path) -> None:
    path = env_file(tmp_path, RELAY_LINES)
    result = run_newsletter(
        project_dir, "send", SAMPLE_ISSUE, env={"NEWSLETTER_ENV_FILE": str(path)}
    )
    assert result.returncode == 0, result.stderr
    assert "Route:      the SMTP relay relay.team.example:587" in result.stdout


def test_the_default_file_is_in_the_users_config_folder(project_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = home / ".config" / "newsletter" / "newsletter.env"
    path.parent.mkdir(parents=True)
    path.write_text(RELAY_LINES, encoding="utf-8")
    path.chmod(0o600)
    result = run_newsletter(project_dir, "send", SAMPLE_ISSUE, env={"HOME": str(home)})
    assert "relay.team.example" in result.stdout, result.stderr


def test_the_real_environment_wins_over_the_file(project_dir: Path, tmp_path: Path) -> None:
    path = env_file(tmp_path, RELAY_LINES)
    result = run_newsletter(
        project_dir,
        "send",
        SAMPLE_ISSUE,
        env={"NEWSLETTER_ENV_FILE": str(path), "NEWSLETTER_SMTP_HOST": "relay.override.example"},
    )
    assert "the SMTP relay relay.override.example:587" in result.stdout, result.stderr
    assert "relay.team.example" not in result.stdout


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604])
def test_a_file_others_can_read_is_refused_in_one_line_and_nothing_is_sent(
    project_dir: Path, tmp_path: Path, mode: int
) -> None:
    path = env_file(tmp_path, "NEWSLETTER_SMTP_PASSWORD=hunter2-secret\n", mode)
    result = run_newsletter(
        project_dir,
        "send",
        SAMPLE_ISSUE,
        "--send",
        "--yes",
        env={"NEWSLETTER_ENV_FILE": str(path)},
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"newsletter: {path} holds secrets but other people on this computer can read it "
        f"(mode {mode:o}); make it yours alone with: chmod 600 {path}\n"
    )
    assert "hunter2" not in result.stdout + result.stderr
    assert not (project_dir / "outbox").exists()


def test_nothing_from_the_file_stays_behind_after_a_command(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_ENV_FILE", str(env_file(tmp_path, RELAY_LINES)))
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "send", SAMPLE_ISSUE])
    assert "relay.team.example" in result.output
    assert "NEWSLETTER_SMTP_HOST" not in os.environ


def test_newsletter_secret_writes_a_private_file_and_never_replaces_by_accident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "home" / ".config" / "newsletter" / "newsletter.env"
    monkeypatch.setenv("NEWSLETTER_ENV_FILE", str(path))
    runner = CliRunner()

    result = runner.invoke(cli, ["secret"])
    assert result.exit_code == 0, result.output
    assert f"wrote a new NEWSLETTER_UNSUBSCRIBE_SECRET to {path}" in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = read_env_file(path)["NEWSLETTER_UNSUBSCRIBE_SECRET"]
    assert len(first) >= 40
    assert first not in result.output  # a secret is never shown

    # The links in emails already sent are signed with it: a second run refuses.
    path.write_text(path.read_text(encoding="utf-8") + "NEWSLETTER_SMTP_PASSWORD=kept\n")
    result = runner.invoke(cli, ["secret"])
    assert result.exit_code == 1
    assert "newsletter secret --replace" in result.stderr
    assert read_env_file(path)["NEWSLETTER_UNSUBSCRIBE_SECRET"] == first

    result = runner.invoke(cli, ["secret", "--replace"])
    assert result.exit_code == 0, result.output
    values = read_env_file(path)
    assert values["NEWSLETTER_UNSUBSCRIBE_SECRET"] != first
    assert values["NEWSLETTER_SMTP_PASSWORD"] == "kept"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_line_that_cannot_be_read_is_named_without_showing_it(
    project_dir: Path, tmp_path: Path
) -> None:
    path = env_file(tmp_path, 'NEWSLETTER_TRANSPORT=smtp\nNEWSLETTER_SMTP_PASSWORD="hunter2\n')
    result = run_newsletter(project_dir, "schedule", env={"NEWSLETTER_ENV_FILE": str(path)})
    assert result.returncode == 1
    assert result.stderr.startswith(f"newsletter: {path}:2: this line is not NAME=value")
    assert "hunter2" not in result.stdout + result.stderr
