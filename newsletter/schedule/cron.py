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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from newsletter.core.envfile import DEFAULT_ENV_FILE as DEFAULT_ENV_FILE  # serve --systemd
from newsletter.core.envfile import env_file_path
from newsletter.core.project import Project

UNIT_NAME = "newsletter-dispatch"
INBOX_UNIT_NAME = "newsletter-inbox"


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
    unsubscribes, only worth running when a bounce mailbox is set up
    (`inbox_mailbox`); `serve` (when the project needs it) answers one-click
    unsubscribes and provider webhooks, and runs all the time, so only
    systemd can keep it up.
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
    inbox_mailbox: str | None = None  # e.g. "imap.example.org", when inbox.imap is set up

    def as_text(self, *, systemd: bool = False) -> str:
        """What this project needs, each part saying what it is for, as `newsletter cron` prints it."""
        lines = self._systemd_lines() if systemd else self._cron_lines()
        if self.inbox_mailbox is None:
            lines += [
                "# No bounce mailbox is set up (inbox.imap in newsletter.yaml), so there is no",
                "# `newsletter inbox` job; docs/list-loop.md says how to add one.",
            ]
        if self.serve is not None:
            lines += [
                "",
                "# One-click unsubscribe links (unsubscribe.url) and provider webhooks need",
                "# `newsletter serve` running all the time; cron cannot keep a server up, systemd can:",
                self.serve.as_text(),
            ]
        lines += [
            "",
            f"# Secrets (NEWSLETTER_SMTP_PASSWORD=... and the like) are read from {self.env_file},",
            "# one NAME=value per line, readable only by you (chmod 600); `newsletter secret`",
            "# creates it with the unsubscribe secret. It may be absent when nothing needs a secret.",
        ]
        return "\n".join(lines)

    def _cron_lines(self) -> list[str]:
        lines = [
            "# Add these lines with `crontab -e` (or print systemd timers: newsletter cron --systemd).",
            "# Send approved issues when they are due (checks every 5 minutes; output goes to",
            f"# {self.output_log}):",
            self.crontab_line,
        ]
        if self.inbox_mailbox is not None:
            lines += [
                f"# Read bounces, complaints and unsubscribe requests from {self.inbox_mailbox}",
                "# (every 15 minutes):",
                self.inbox_crontab_line,
            ]
        return lines

    def _systemd_lines(self) -> list[str]:
        dispatch_units = TimedUnits(
            self.service_name, self.service_text, self.timer_name, self.timer_text
        )
        lines = ["# Sends approved issues when they are due:", dispatch_units.as_text()]
        timers = [self.timer_name]
        if self.inbox_mailbox is not None:
            lines += [
                f"# Reads bounces, complaints and unsubscribe requests from {self.inbox_mailbox}:",
                self.inbox_units.as_text(),
            ]
            timers.append(self.inbox_units.timer_name)
        return [
            *lines,
            "# Then: systemctl --user daemon-reload",
            f"#       systemctl --user enable --now {' '.join(timers)}",
            "#       loginctl enable-linger   (keeps them running when you log out)",
        ]


def needs_serve(project: Project, environ: Mapping[str, str]) -> bool:
    """Whether `newsletter serve` must run: one-click links are on, or a webhook has a login."""
    if project.settings.unsubscribe_url:
        return True
    return any(
        environ.get(f"NEWSLETTER_{provider}_WEBHOOK_USERNAME")
        for provider in ("POSTMARK", "MAILJET")
    )


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
    env_path = (env_file or env_file_path()).expanduser().absolute()
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
    imap = project.settings.imap
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
        inbox_mailbox=f"the mailbox at {imap.host}" if imap is not None else None,
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
                "# `dispatch` uses to sign the links; `newsletter secret` writes one), plus any",
                "# webhook credentials; chmod 600.",
                "# Put a reverse proxy (nginx, Caddy) in front for HTTPS: see docs/server.md.",
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
    env_path = (env_file or env_file_path()).expanduser().absolute()
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
