"""Ready-to-paste set-ups that run `newsletter dispatch` and `newsletter inbox` every few
minutes, and keep `newsletter serve` running.

Two ways a server can run the first two: crontab lines, or systemd service +
timer pairs; `serve` is a long-running server, so it gets a systemd service.
All use absolute paths (cron and systemd start in a bare environment), run in
the project directory, and read secrets from an environment file that lives
outside the project, so passwords never sit beside the content in git.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from newsletter.core.project import Project

UNIT_NAME = "newsletter-dispatch"
INBOX_UNIT_NAME = "newsletter-inbox"
DEFAULT_ENV_FILE = Path("~/.config/newsletter/newsletter.env")


@dataclass(frozen=True)
class TimedUnits:
    """A systemd service that runs one command, and the timer that starts it."""

    service_name: str
    service_text: str
    timer_name: str
    timer_text: str

    def as_text(self) -> str:
        return "\n".join(
            [
                f"# Save as ~/.config/systemd/user/{self.service_name}:",
                self.service_text,
                f"# Save as ~/.config/systemd/user/{self.timer_name}:",
                self.timer_text,
            ]
        )


@dataclass(frozen=True)
class CronSetup:
    """The crontab lines and the systemd unit files for one project directory.

    `dispatch` sends what is due; `inbox` reads bounces, complaints and mailed
    unsubscribes; `serve` (when asked for) answers one-click unsubscribes and
    provider webhooks, and runs all the time, so only systemd can keep it up.
    """

    crontab_line: str
    service_name: str
    service_text: str
    timer_name: str
    timer_text: str
    env_file: Path
    output_log: Path
    inbox_crontab_line: str
    inbox_units: TimedUnits
    serve: ServeUnit | None = None

    def as_text(self) -> str:
        """Everything, with short instructions, as `newsletter cron` prints it."""
        dispatch_units = TimedUnits(
            self.service_name, self.service_text, self.timer_name, self.timer_text
        )
        lines = [
            "# --- Option 1: cron ------------------------------------------------",
            "# Add these lines with `crontab -e`. The first sends issues that are due",
            "# (every 5 minutes):",
            self.crontab_line,
            "# the second reads bounces, complaints and unsubscribe requests every 15",
            "# minutes (`newsletter inbox`; needs inbox.imap and NEWSLETTER_IMAP_* set):",
            self.inbox_crontab_line,
            "",
            "# --- Option 2: systemd timers ----------------------------------------",
            dispatch_units.as_text(),
            self.inbox_units.as_text(),
            "# Then: systemctl --user daemon-reload",
            f"#       systemctl --user enable --now {self.timer_name} "
            f"{self.inbox_units.timer_name}",
            "#       loginctl enable-linger   (keeps them running when you log out)",
            "",
        ]
        if self.serve is not None:
            lines += [
                "# --- With either option: newsletter serve --------------------------",
                "# One-click unsubscribe links and provider webhooks need `newsletter serve`",
                "# running all the time (only when unsubscribe.url is set, or webhooks are",
                "# used). Cron cannot keep a server running; systemd can:",
                self.serve.as_text(),
                "",
            ]
        lines += [
            f"# Secrets (e.g. NEWSLETTER_SMTP_PASSWORD=...) go in {self.env_file},",
            "# one NAME=value per line, readable only by you (chmod 600). It may be absent",
            "# when the transport needs no secrets.",
        ]
        return "\n".join(lines)


def newsletter_command() -> list[str]:
    """The absolute command that runs this installation of `newsletter`."""
    # Prefer the console script beside the running interpreter (the same virtualenv),
    # then one on PATH; fall back to the interpreter itself, which always works.
    beside = Path(sys.executable).parent / "newsletter"
    if beside.is_file():
        return [str(beside.absolute())]
    found = shutil.which("newsletter")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "newsletter"]


def _systemd_quote(word: str) -> str:
    if not word or any(c in word for c in " \t\"'\\;$%"):
        escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
        return f'"{escaped}"'
    return word


def _cron_escape(text: str) -> str:
    # cron turns an unescaped % into a newline: escape it in the command part.
    return text.replace("%", "\\%")


def cron_setup(
    project: Project,
    *,
    env_file: Path | None = None,
    command: list[str] | None = None,
    every_minutes: int = 5,
    inbox_every_minutes: int = 15,
    serve_at: tuple[str, int] | None = None,
) -> CronSetup:
    """Build the crontab lines and systemd units for `project`.

    `serve_at` (host, port) adds the service that keeps `newsletter serve` running.
    """
    root = project.root_dir.resolve()
    env_path = (env_file or DEFAULT_ENV_FILE).expanduser().absolute()
    program = command or newsletter_command()
    output_log = project.settings.dispatch_log_path.parent.absolute() / "cron.log"
    quoted_env = shlex.quote(str(env_path))

    def shell(words: list[str]) -> str:
        return _cron_escape(
            f"cd {shlex.quote(str(root))}"
            f" && if [ -r {quoted_env} ]; then set -a; . {quoted_env}; set +a; fi"
            f" && mkdir -p {shlex.quote(str(output_log.parent))}"
            f" && {shlex.join(words)} >> {shlex.quote(str(output_log))} 2>&1"
        )

    organisation = project.settings.organisation
    dispatch = _timed_units(
        UNIT_NAME,
        f"Send {organisation} newsletter issues that are due",
        [*program, "dispatch"],
        root,
        env_path,
        every_minutes,
        # Exit 3 means the previous run still holds the lock: not a failure.
        success_exit_status="3",
    )
    inbox = _timed_units(
        INBOX_UNIT_NAME,
        f"Read bounces, complaints and unsubscribe requests for the {organisation} newsletter",
        [*program, "inbox"],
        root,
        env_path,
        inbox_every_minutes,
    )
    serve = None
    if serve_at is not None:
        host, port = serve_at
        serve = serve_unit(project, host=host, port=port, env_file=env_path, command=program)
    return CronSetup(
        crontab_line=f"*/{every_minutes} * * * * {shell([*program, 'dispatch'])}",
        service_name=dispatch.service_name,
        service_text=dispatch.service_text,
        timer_name=dispatch.timer_name,
        timer_text=dispatch.timer_text,
        env_file=env_path,
        output_log=output_log,
        inbox_crontab_line=f"*/{inbox_every_minutes} * * * * {shell([*program, 'inbox'])}",
        inbox_units=inbox,
        serve=serve,
    )


def _timed_units(
    unit_name: str,
    description: str,
    argv: list[str],
    root: Path,
    env_path: Path,
    every_minutes: int,
    success_exit_status: str | None = None,
) -> TimedUnits:
    """A oneshot service running `argv` in the project, and a timer every few minutes."""
    service_name = f"{unit_name}.service"
    timer_name = f"{unit_name}.timer"
    service_lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={root}",
        # The leading '-' lets the service run when there is no environment file.
        f"EnvironmentFile=-{env_path}",
        f"Environment={_systemd_quote(f'NEWSLETTER_ROOT={root}')}",
        f"ExecStart={' '.join(_systemd_quote(w) for w in argv)}",
    ]
    if success_exit_status:
        service_lines.append(f"SuccessExitStatus={success_exit_status}")
    timer_text = "\n".join(
        [
            "[Unit]",
            f"Description=Run {service_name} every {every_minutes} minutes",
            "",
            "[Timer]",
            f"OnCalendar=*:0/{every_minutes}",
            # Persistent: a tick missed while the machine was off runs at boot.
            "Persistent=true",
            f"Unit={service_name}",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return TimedUnits(service_name, "\n".join([*service_lines, ""]), timer_name, timer_text)


SERVE_UNIT_NAME = "newsletter-serve"


@dataclass(frozen=True)
class ServeUnit:
    """The systemd service that keeps `newsletter serve` running for one project directory."""

    service_name: str
    service_text: str
    env_file: Path

    def as_text(self) -> str:
        """The unit with short instructions, as `newsletter serve --systemd` prints it."""
        return "\n".join(
            [
                f"# Save as ~/.config/systemd/user/{self.service_name}:",
                self.service_text,
                "# Then: systemctl --user daemon-reload",
                f"#       systemctl --user enable --now {self.service_name}",
                "#       loginctl enable-linger   (keeps it running when you log out)",
                "",
                f"# {self.env_file} must hold NEWSLETTER_UNSUBSCRIBE_SECRET=... (the same value",
                "# `dispatch` uses to sign the links), plus any webhook credentials; chmod 600.",
                "# Put a reverse proxy (nginx, Caddy) in front for HTTPS: see the README,",
                '# "When people leave the list".',
            ]
        )


def serve_unit(
    project: Project,
    *,
    host: str,
    port: int,
    env_file: Path | None = None,
    command: list[str] | None = None,
) -> ServeUnit:
    """Build the systemd service that runs `newsletter serve` for `project`."""
    root = project.root_dir.resolve()
    env_path = (env_file or DEFAULT_ENV_FILE).expanduser().absolute()
    argv = [*(command or newsletter_command()), "serve", "--host", host, "--port", str(port)]
    service_name = f"{SERVE_UNIT_NAME}.service"
    service_text = "\n".join(
        [
            "[Unit]",
            f"Description=One-click unsubscribe for the {project.settings.organisation} newsletter",
            "After=network.target",
            "",
            "[Service]",
            # exec: systemd reports a start failure (bad settings, port taken) at once.
            "Type=exec",
            f"WorkingDirectory={root}",
            # Not optional here: without the secret serve refuses to start.
            f"EnvironmentFile={env_path}",
            f"Environment={_systemd_quote(f'NEWSLETTER_ROOT={root}')}",
            f"ExecStart={' '.join(_systemd_quote(w) for w in argv)}",
            "Restart=on-failure",
            "RestartSec=5",
            # Only what works in a user unit everywhere: ProtectSystem= and friends
            # need user namespaces there, and fail the start where those are off.
            "NoNewPrivileges=yes",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )
    return ServeUnit(service_name=service_name, service_text=service_text, env_file=env_path)
