"""The `newsletter` command: a thin click layer over the library.

Each command parses its arguments, calls one library function and prints the
result. Errors from the library (`NewsletterError`) are caught here, in one
place, and printed as plain messages with the exit codes ARCHITECTURE.md lists:
0 success, 1 content invalid or deliveries failed, 2 usage, 3 lock held.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

import click

from newsletter import __version__
from newsletter.cli.common import AppContext, content_error_summary, not_done_by, problem_lines
from newsletter.core.envfile import environment_from_file
from newsletter.core.errors import ContentError, LockHeldError, NewsletterError


class CommandEntry(NamedTuple):
    """Where a command lives (a module in newsletter/cli/) and the summary `--help` lists."""

    module: str
    summary: str


# Every command, by name. A command's module is imported only when that command
# runs (or its own --help is asked for), so `newsletter --help` and the commands
# cron runs every few minutes do not pay for premailer, msal, requests, werkzeug
# and the rest. Adding a command is one line here; the summary must be the first
# sentence of the command's docstring (tests/properties/test_startup_imports.py checks).
COMMAND_TABLE: dict[str, CommandEntry] = {
    "approve": CommandEntry("issue_commands", "Approve ISSUE for sending, as NAME, exactly as the files stand now."),
    "archive": CommandEntry("archive_commands", "Build the archive site: every approved issue and the publications catalogue."),
    "audience": CommandEntry("list_commands", "Show who would get ISSUE: totals, per segment, per variant, merged and suppressed."),
    "cron": CommandEntry("schedule_commands", "Print what this project needs to run on its own: crontab lines (or systemd timers)."),
    "dispatch": CommandEntry("schedule_commands", "Send every approved issue whose send_at has passed: the command cron runs."),
    "import": CommandEntry("import_commands", "Start an issue from the briefing paper FILE (.docx, .md or the exported .txt)."),
    "inbox": CommandEntry("inbox_commands", "Act on what comes back: bounces, complaints, unsubscribe requests."),
    "init": CommandEntry("project_commands", "Create a project for your team in DIRECTORY (new or empty)."),
    "new": CommandEntry("issue_commands", "Start a new issue: write issues/ID.yaml with today's date, unscheduled and unapproved."),
    "outbox": CommandEntry("outbox_commands", "List the messages in the outbox: subject, to, when, and a real send or a test copy."),
    "preview": CommandEntry("render_commands", "Preview ISSUE in a browser, on this computer only (127.0.0.1)."),
    "render": CommandEntry("render_commands", "Write ISSUE's emails to files: per variant the HTML, the text and a sample .eml."),
    "report": CommandEntry("send_commands", "Say who got ISSUE: each recipient's status, counted, with every failure."),
    "resubscribe": CommandEntry("list_commands", "Send to ADDRESS again: take it off recipients/suppressed.csv."),
    "retry": CommandEntry("send_commands", "Send ISSUE again to the people whose delivery failed temporarily."),
    "schedule": CommandEntry("schedule_commands", "List every issue with its state and approval."),
    "secret": CommandEntry("project_commands", "Write a new random unsubscribe secret into the environment file."),
    "send": CommandEntry("send_commands", "Send ISSUE to its audience, exactly once per person (a dry run unless --send)."),
    "serve": CommandEntry("serve_commands", "Answer one-click unsubscribe links (and provider webhooks) over HTTP."),
    "studio": CommandEntry("studio_commands", "Write, check, preview, approve and send issues from a web browser."),
    "unsubscribe": CommandEntry("list_commands", "Stop sending to ADDRESS: add it to recipients/suppressed.csv."),
    "validate": CommandEntry("project_commands", "Check settings, catalogue, recipients, segments and issues."),
}  # fmt: skip


def load_command(name: str, entry: CommandEntry) -> click.Command:
    """The command `name` from its module's COMMANDS list, importing the module now."""
    module = importlib.import_module(f"newsletter.cli.{entry.module}")
    for command in module.COMMANDS:
        if command.name == name:
            return command  # type: ignore[no-any-return]
    raise LookupError(f"newsletter.cli.{entry.module} has no command {name!r} in COMMANDS")


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands: every name in the table, each imported on first use.

    Behaves as the dict click keeps (`cli.commands[name]`, `sorted(cli.commands)`),
    so code and tests that look commands up need not know they load lazily.
    """

    def __init__(self, table: dict[str, CommandEntry]) -> None:
        self._table = table
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            if name not in self._table:
                raise KeyError(name)
            self._loaded[name] = load_command(name, self._table[name])
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._table = {key: entry for key, entry in self._table.items() if key != name}

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._table, *self._loaded]))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def summary(self, name: str) -> str | None:
        """The one-line help for `name` without importing it (None: ask the command)."""
        if name in self._loaded or name not in self._table:
            return None
        return self._table[name].summary


def _is_template_error(error: Exception) -> bool:
    """A Jinja2 template error; jinja2 can only have raised one if something imported it."""
    jinja2 = sys.modules.get("jinja2")
    return jinja2 is not None and isinstance(error, jinja2.TemplateError)


EXIT_LOCK_HELD = 3


class NewsletterGroup(click.Group):
    """Turns library errors into messages and exit codes instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LockHeldError as error:
            click.echo(f"newsletter: {error}", err=True)
            ctx.exit(EXIT_LOCK_HELD)
        except ContentError as error:
            # Everything goes to stderr: a command asked for JSON keeps stdout clean.
            app = ctx.obj if isinstance(ctx.obj, AppContext) else None
            for _, line in problem_lines(error.problems, verbose=app is not None and app.verbose):
                click.echo(line, err=True)
            command = self.get_command(ctx, ctx.invoked_subcommand or "")
            summary = content_error_summary(error.problems, not_done_by(command))
            click.echo(f"newsletter: {summary}", err=True)
            ctx.exit(1)
        except NewsletterError as error:
            click.echo(f"newsletter: {error}", err=True)
            ctx.exit(1)
        # Last resorts, so no traceback reaches a user: the library turns what it
        # expects into NewsletterError with a better message.
        except sqlite3.Error as error:
            click.echo(
                "newsletter: a SQLite file the newsletter keeps (the delivery ledger, in var/ "
                f"unless `ledger_path` says otherwise) cannot be used: {error}",
                err=True,
            )
            ctx.exit(1)
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"newsletter: {where}{error.strerror or error}", err=True)
            ctx.exit(1)
        except Exception as error:
            if not _is_template_error(error):
                raise
            from newsletter.render.problems import render_error_problems

            for problem in render_error_problems(error, Path("templates")):
                click.echo(str(problem), err=True)
            ctx.exit(1)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`, from the table: no command module is imported."""
        commands = self.commands
        if not isinstance(commands, LazyCommands):
            return super().format_commands(ctx, formatter)
        names = self.list_commands(ctx)
        if not names:
            return None
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            summary = commands.summary(name)
            # A stand-in carrying the summary shortens it exactly as click would the real one.
            command = commands[name] if summary is None else click.Command(name, help=summary)
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        return None


@click.group(
    cls=NewsletterGroup,
    commands=LazyCommands(COMMAND_TABLE),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--root",
    "root_dir",
    type=click.Path(file_okay=False, path_type=str),
    envvar="NEWSLETTER_ROOT",
    default=None,
    show_default="the folder holding newsletter.yaml, here or above",
    help="The project directory (holds newsletter.yaml, issues/, templates/, recipients/).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Say more about what is happening, and list every warning even when many are alike.",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, root_dir: str | None, verbose: bool) -> None:
    """Write, check, preview, send and archive the partnership's News Update.

    Secrets (passwords, API keys, the unsubscribe secret) are read from
    ~/.config/newsletter/newsletter.env, or the file NEWSLETTER_ENV_FILE names.
    """
    # Every command sees the environment file, as cron and systemd do; the real
    # environment wins, and nothing stays behind once the command ends.
    ctx.with_resource(environment_from_file())
    if root_dir is None:
        root_dir = os.environ.get("NEWSLETTER_ROOT") or None
    ctx.obj = AppContext.create(root_dir, verbose)


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="newsletter")


if __name__ == "__main__":  # pragma: no cover
    main()
