"""Commands start quickly: each imports only what it uses.

`newsletter --help`, and `schedule` and `dispatch` that cron runs every few
minutes, must not wait for premailer, msal or requests to load. The CLI group
imports a command's module only when that command runs and lists the others
from a table (`COMMAND_TABLE`), which is checked here against the commands
themselves so the listing cannot drift from them. The import checks run in a
fresh interpreter: in this one, other tests have imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import COMMAND_TABLE, cli, load_command

REPO_DIR = Path(__file__).resolve().parents[2]
CLI_DIR = REPO_DIR / "newsletter" / "cli"
# What only rendering, sending or serving needs: none of it on the way to a command.
HEAVY = ("premailer", "cssutils", "lxml", "msal", "requests", "werkzeug", "waitress", "dkim")
# The CLI itself, for `--help`: not even what reading a project needs.
READING = ("jinja2", "markdown_it", "email_validator", "yaml")

# Runs the CLI with the given arguments, then prints the top-level modules it loaded.
REPORT_MODULES = """
import json, sys
from newsletter.cli import main
sys.argv = ["newsletter", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
# What renders an email: `schedule` reads approvals' fingerprints, it renders nothing.
RENDERING = ("newsletter.render.variants", "newsletter.render.message", "newsletter.render.budget")


def loaded_modules(cwd: Path, *args: str) -> set[str]:
    """The top-level modules a fresh `newsletter ARGS` process has imported when it ends."""
    return {name.split(".")[0] for name in loaded_module_names(cwd, *args)}


def loaded_module_names(cwd: Path, *args: str) -> set[str]:
    """Every module (dotted names) a fresh `newsletter ARGS` process has imported when it ends."""
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    done = subprocess.run(
        [sys.executable, "-c", REPORT_MODULES, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    return set(report["modules"])


def modules_after_importing(module: str, cwd: Path) -> set[str]:
    """The top-level modules a fresh interpreter has loaded once it has imported `module`."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {name.split(".")[0] for name in json.loads(done.stdout)}


def test_importing_the_cli_loads_no_heavy_library(tmp_path: Path) -> None:
    loaded = modules_after_importing("newsletter.cli", tmp_path)
    assert not loaded & {*HEAVY, *READING}


def test_smtp_with_a_password_loads_no_http_library(tmp_path: Path) -> None:
    # Only Microsoft 365's OAuth2 needs msal and requests, to ask for a token.
    loaded = modules_after_importing("newsletter.transports.smtp.send", tmp_path)
    assert "smtplib" in loaded
    assert not loaded & {"requests", "urllib3", "msal"}


def test_help_loads_no_command_module(tmp_path: Path) -> None:
    loaded = loaded_modules(tmp_path, "--help")
    assert not loaded & {*HEAVY, *READING}


def test_schedule_reads_the_project_without_rendering_or_sending_libraries(
    project_dir: Path,
) -> None:
    loaded = loaded_module_names(project_dir, "schedule")
    assert "yaml" in loaded  # it did read the project
    assert "newsletter.review.fingerprint" in loaded  # and checked the approval
    assert not {name.split(".")[0] for name in loaded} & set(HEAVY)
    assert not loaded & set(RENDERING)
    # The sample's Markdown holds no link, so its link checks need no parser.
    assert "markdown_it" not in {name.split(".")[0] for name in loaded}


def test_schedule_run_again_asks_email_validator_nothing(project_dir: Path) -> None:
    # Its answers about the settings' and lists' addresses were kept by the first run.
    assert "email_validator" in loaded_modules(project_dir, "schedule")
    assert "email_validator" not in loaded_modules(project_dir, "schedule")


def test_validate_run_again_on_unchanged_files_does_not_load_premailer(project_dir: Path) -> None:
    # The first run inlines each variant's CSS and keeps the result in the user's cache.
    assert {"premailer", "cssutils", "lxml"} <= loaded_modules(project_dir, "validate")
    loaded = loaded_modules(project_dir, "validate")
    assert "jinja2" in loaded  # it did render the emails
    assert not loaded & {"premailer", "cssutils", "lxml"}


def test_validate_after_an_edit_inlines_again_without_requests_or_email_validator(
    project_dir: Path,
) -> None:
    loaded_modules(project_dir, "validate")  # keeps its answers and inlined HTML
    issue = project_dir / "issues" / "2023-05-panel-reports.yaml"
    text = issue.read_text(encoding="utf-8")
    issue.write_text(text.replace("\ntitle: ", "\ntitle: Edited - ", 1), encoding="utf-8")
    loaded = loaded_modules(project_dir, "validate")
    assert "premailer" in loaded  # the edited HTML was inlined afresh
    # premailer's fetching library, and the address checks already answered.
    assert not loaded & {"requests", "urllib3", "email_validator"}


def test_render_writes_files_without_loading_a_web_server(project_dir: Path) -> None:
    loaded = loaded_modules(project_dir, "render", "2023-05-panel-reports")
    assert (project_dir / "out" / "2023-05-panel-reports" / "index.html").is_file()
    assert not loaded & {"werkzeug", "waitress", "requests"}


def test_cron_dispatch_with_nothing_due_loads_no_sending_library(project_dir: Path) -> None:
    # Before the sample's send_at: cron's every-five-minutes run that finds nothing to do.
    loaded = loaded_modules(project_dir, "dispatch", "--now", "2023-05-01T09:00:00+01:00")
    assert "yaml" in loaded
    assert not loaded & {*HEAVY, "smtplib", "notifications_python_client"}


def test_every_command_module_command_is_in_the_table() -> None:
    for path in sorted(CLI_DIR.glob("*_commands.py")):
        module = __import__(f"newsletter.cli.{path.stem}", fromlist=["COMMANDS"])
        for command in module.COMMANDS:
            assert command.name in COMMAND_TABLE, f"add {command.name!r} to COMMAND_TABLE"
            assert COMMAND_TABLE[command.name].module == path.stem, command.name


@pytest.mark.parametrize("name", sorted(COMMAND_TABLE))
def test_the_table_summary_is_the_commands_own(name: str) -> None:
    entry = COMMAND_TABLE[name]
    command = load_command(name, entry)
    assert command.name == name
    assert command.get_short_help_str(limit=1_000) == entry.summary


def test_help_lists_commands_as_click_would_with_every_command_loaded() -> None:
    loaded = click.Group(
        name=cli.name,
        commands=[load_command(name, entry) for name, entry in COMMAND_TABLE.items()],
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
    )
    lazy_help = CliRunner().invoke(cli, ["--help"], prog_name="newsletter")
    loaded_help = CliRunner().invoke(loaded, ["--help"], prog_name="newsletter")
    assert lazy_help.exit_code == 0, lazy_help.output
    assert lazy_help.output == loaded_help.output
    assert "\n  validate     Check settings, catalogue" in lazy_help.output


def test_an_unknown_command_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--root", str(tmp_path), "shedule"])
    assert result.exit_code == 2
    assert "No such command 'shedule'" in result.output
    assert "schedule" in result.output.split("No such command", 1)[1]
