"""Setting up `newsletter serve`: validate's secret check and the systemd unit it prints."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.schedule.cron import newsletter_command
from tests.support.project import enable_one_click


def _validate(project_dir: Path, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "validate", "--quiet"], env=env)
    return result.exit_code, result.output


def test_validate_reports_a_url_without_a_secret_at_its_line(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_one_click(project_dir, monkeypatch)
    settings = (project_dir / "newsletter.yaml").resolve()
    line = next(
        n
        for n, text in enumerate(settings.read_text(encoding="utf-8").splitlines(), 1)
        if text.startswith("  url: ")
    )

    code, output = _validate(project_dir, {"NEWSLETTER_UNSUBSCRIBE_SECRET": None})

    assert code == 1
    assert (
        f"{settings}:{line}:8: `unsubscribe.url` is set but NEWSLETTER_UNSUBSCRIBE_SECRET" in output
    )
    assert _validate(project_dir)[0] == 0  # the fixture's secret is in the environment


def test_the_sample_project_promises_no_one_click_link(project_dir: Path) -> None:
    # Nothing serves the sample's links, so it validates with no secret at all.
    code, output = _validate(project_dir, {"NEWSLETTER_UNSUBSCRIBE_SECRET": None})
    assert code == 0, output


def _unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_serve_systemd_prints_a_unit_that_runs_serve_in_the_project(
    project_dir: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "secrets.env"
    result = CliRunner().invoke(
        cli,
        [
            "--root",
            str(project_dir),
            "serve",
            "--systemd",
            "--port",
            "8181",
            "--env-file",
            str(env_file),
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.output
    unit_text = text[text.index("[Unit]") : text.index("# Then:")]
    unit = _unit(unit_text)
    service = unit["Service"]
    assert service["ExecStart"] == " ".join(
        [*newsletter_command(), "serve", "--host", "127.0.0.1", "--port", "8181"]
    )
    assert service["WorkingDirectory"] == str(project_dir.resolve())
    assert service["EnvironmentFile"] == str(env_file)
    assert service["Restart"] == "on-failure"
    assert service["Environment"] == f"NEWSLETTER_ROOT={project_dir.resolve()}"
    assert unit["Install"]["WantedBy"] == "default.target"

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze is not installed: the unit was checked by its keys only")
        return
    units = tmp_path / "units"
    units.mkdir()
    env_file.write_text("NEWSLETTER_UNSUBSCRIBE_SECRET=x\n", encoding="utf-8")
    (units / "newsletter-serve.service").write_text(unit_text, encoding="utf-8")
    verified = subprocess.run(
        [analyze, "verify", "newsletter-serve.service"],
        cwd=units,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert verified.returncode == 0, verified.stderr
    assert "newsletter-serve" not in verified.stderr, verified.stderr
