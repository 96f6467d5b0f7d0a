"""`newsletter cron`: the crontab line and systemd units are ready to paste and actually work."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.core.project import open_project
from newsletter.schedule.cron import CronSetup, cron_setup, newsletter_command
from tests.support.project import enable_one_click, unapprove_sample


def _setup(project_dir: Path, env_file: Path) -> CronSetup:
    return cron_setup(open_project(project_dir), env_file=env_file)


def _unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def _cron_command(line: str) -> str:
    fields = line.split(" ", 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    # cron itself turns \% back into %, and runs the rest with /bin/sh.
    return fields[5].replace("\\%", "%")


def test_crontab_line_runs_dispatch_in_the_project_with_absolute_paths(
    project_dir: Path, tmp_path: Path
) -> None:
    setup = _setup(project_dir, tmp_path / "secrets.env")
    command = _cron_command(setup.crontab_line)
    assert f"cd {project_dir}" in command
    assert shlex.join(newsletter_command()) + " dispatch" in command
    assert Path(newsletter_command()[0]).is_absolute()
    assert command.endswith(f">> {project_dir / 'var' / 'cron.log'} 2>&1")


def test_crontab_command_works_from_a_bare_environment_and_reads_the_env_file(
    project_dir: Path, tmp_path: Path
) -> None:
    # A directory with a space and a percent sign: both need quoting or escaping.
    odd_dir = tmp_path / "News 100% update"
    shutil.copytree(project_dir, odd_dir)
    unapprove_sample(odd_dir)  # a draft: this run has nothing to send or hold
    env_file = tmp_path / "secrets.env"
    setup = _setup(odd_dir, env_file)
    command = _cron_command(setup.crontab_line)
    bare_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    # No environment file yet: dispatch runs and finds nothing due (the sample is a draft).
    finished = subprocess.run(["/bin/sh", "-c", command], env=bare_env, cwd="/", check=False)
    assert finished.returncode == 0
    log = (odd_dir / "var" / "cron.log").read_text(encoding="utf-8")
    assert "nothing to send (1 draft)" in log

    # The environment file is read: a setting from it reaches dispatch.
    env_file.write_text("NEWSLETTER_TRANSPORT=carrier-pigeon\n", encoding="utf-8")
    finished = subprocess.run(["/bin/sh", "-c", command], env=bare_env, cwd="/", check=False)
    assert finished.returncode == 1
    log = (odd_dir / "var" / "cron.log").read_text(encoding="utf-8")
    assert "`carrier-pigeon` is not a transport" in log


def test_systemd_units_have_the_keys_a_oneshot_timer_needs(
    project_dir: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "secrets.env"
    setup = _setup(project_dir, env_file)
    service = _unit(setup.service_text)
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["WorkingDirectory"] == str(project_dir)
    assert service["Service"]["EnvironmentFile"] == f"-{env_file}"
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert exec_start == [*newsletter_command(), "dispatch"]
    assert Path(exec_start[0]).is_absolute()
    assert "3" in service["Service"]["SuccessExitStatus"].split()

    timer = _unit(setup.timer_text)
    assert timer["Timer"]["OnCalendar"] == "*:0/5"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == setup.service_name
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_units_pass_systemd_analyze_verify(project_dir: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    setup = _setup(project_dir, tmp_path / "secrets.env")
    units = tmp_path / "units"
    units.mkdir()
    (units / setup.service_name).write_text(setup.service_text, encoding="utf-8")
    (units / setup.timer_name).write_text(setup.timer_text, encoding="utf-8")
    if analyze is None:
        # Without systemd the key checks above are the test; say so in the output.
        print("systemd-analyze is not installed: unit files checked by their keys only")
        return
    result = subprocess.run(
        [analyze, "verify", setup.service_name, setup.timer_name],
        cwd=units,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stderr
    assert "newsletter-dispatch" not in result.stderr, result.stderr


def cron_output(project_dir: Path, env_file: Path, *args: str, **env: str) -> str:
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "cron", "--env-file", str(env_file), *args], env=env
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_a_new_project_gets_only_the_dispatch_line_each_part_saying_what_it_is_for(
    project_dir: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "secrets.env"
    output = cron_output(project_dir, env_file)
    setup = _setup(project_dir, env_file)
    jobs = [line for line in output.splitlines() if line and not line.startswith("#")]
    assert jobs == [setup.crontab_line]
    # No inbox job that would fail every 15 minutes without a mailbox, and it says why.
    assert " inbox" not in setup.crontab_line and "No bounce mailbox is set up" in output
    assert "[Service]" not in output  # no serve unit: nothing needs `serve`
    assert f"read from {env_file}" in output
    assert len(output.splitlines()) <= 15
    systemd = cron_output(project_dir, env_file, "--systemd")
    assert setup.service_text in systemd and setup.timer_text in systemd
    assert "newsletter-inbox" not in systemd
    assert f"systemctl --user enable --now {setup.timer_name}\n" in systemd


def test_a_bounce_mailbox_adds_the_inbox_job(project_dir: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "secrets.env"
    output = cron_output(project_dir, env_file, NEWSLETTER_IMAP_HOST="imap.example.net")
    setup = _setup(project_dir, env_file)
    assert setup.crontab_line in output
    assert "from the mailbox at imap.example.net" in output
    assert setup.inbox_crontab_line in output
    systemd = cron_output(
        project_dir, env_file, "--systemd", NEWSLETTER_IMAP_HOST="imap.example.net"
    )
    assert setup.inbox_units.service_text in systemd
    assert setup.inbox_units.timer_text in systemd
    assert (
        "systemctl --user enable --now newsletter-dispatch.timer newsletter-inbox.timer" in systemd
    )


def test_cron_reads_the_env_file_named_by_newsletter_env_file(
    project_dir: Path, tmp_path: Path
) -> None:
    named = tmp_path / "team.env"
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "cron"], env={"NEWSLETTER_ENV_FILE": str(named)}
    )
    assert result.exit_code == 0, result.output
    assert f". {named};" in result.output


def test_inbox_has_a_systemd_service_and_timer_like_dispatch(
    project_dir: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "secrets.env"
    setup = _setup(project_dir, env_file)
    units = setup.inbox_units
    service = _unit(units.service_text)
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["WorkingDirectory"] == str(project_dir)
    assert service["Service"]["EnvironmentFile"] == f"-{env_file}"
    assert shlex.split(service["Service"]["ExecStart"]) == [*newsletter_command(), "inbox"]
    timer = _unit(units.timer_text)
    assert timer["Timer"]["OnCalendar"] == "*:0/15"
    assert timer["Timer"]["Unit"] == units.service_name == "newsletter-inbox.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_every_unit_cron_prints_passes_systemd_analyze_verify(
    project_dir: Path, tmp_path: Path
) -> None:
    analyze = shutil.which("systemd-analyze")
    env_file = tmp_path / "secrets.env"
    env_file.write_text("NEWSLETTER_UNSUBSCRIBE_SECRET=x\n", encoding="utf-8")
    setup = cron_setup(open_project(project_dir), env_file=env_file, serve_at=("127.0.0.1", 8080))
    assert setup.serve is not None
    units = tmp_path / "units"
    units.mkdir()
    files = {
        setup.inbox_units.service_name: setup.inbox_units.service_text,
        setup.inbox_units.timer_name: setup.inbox_units.timer_text,
        setup.serve.service_name: setup.serve.service_text,
    }
    for name, text in files.items():
        (units / name).write_text(text, encoding="utf-8")
    if analyze is None:
        print("systemd-analyze is not installed: unit files checked by their keys only")
        return
    result = subprocess.run(
        [analyze, "verify", *files],
        cwd=units,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stderr
    assert "newsletter-" not in result.stderr, result.stderr


def test_one_click_unsubscribe_adds_the_serve_service(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "secrets.env"
    assert "newsletter-serve" not in cron_output(project_dir, env_file)
    enable_one_click(project_dir, monkeypatch)
    output = cron_output(project_dir, env_file)
    assert "One-click unsubscribe links (unsubscribe.url)" in output
    # The same service `newsletter serve --systemd` prints, on serve's default address.
    serve = CliRunner().invoke(
        cli, ["--root", str(project_dir), "serve", "--systemd", "--env-file", str(env_file)]
    )
    assert serve.exit_code == 0, serve.output
    assert serve.output.strip() in output
    assert "ExecStart=" in serve.output and "serve --host 127.0.0.1 --port 8080" in serve.output
