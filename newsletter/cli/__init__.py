"""The `newsletter` command: a thin click layer over the library.

Each command parses its arguments, calls one library function and prints the
result. Errors from the library (`NewsletterError`) are caught here, in one
place, and printed as plain messages with the exit codes ARCHITECTURE.md lists:
0 success, 1 content invalid or deliveries failed, 2 usage, 3 lock held.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import click
from jinja2 import TemplateError

from newsletter import __version__
from newsletter.cli import (
    archive_commands,
    import_commands,
    inbox_commands,
    issue_commands,
    list_commands,
    outbox_commands,
    project_commands,
    render_commands,
    schedule_commands,
    send_commands,
    serve_commands,
    studio_commands,
)
from newsletter.cli.common import AppContext, content_error_summary, not_done_by, problem_lines
from newsletter.core.envfile import environment_from_file
from newsletter.core.errors import ContentError, LockHeldError, NewsletterError
from newsletter.render.problems import render_error_problems

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
        except TemplateError as error:
            for problem in render_error_problems(error, Path("templates")):
                click.echo(str(problem), err=True)
            ctx.exit(1)
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


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


for module in (
    project_commands,
    issue_commands,
    import_commands,
    render_commands,
    send_commands,
    outbox_commands,
    list_commands,
    schedule_commands,
    archive_commands,
    inbox_commands,
    serve_commands,
    studio_commands,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="newsletter")


if __name__ == "__main__":  # pragma: no cover
    main()
