"""Commands that set up and check a project: init, validate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli.common import (
    AppContext,
    content_error_summary,
    echo_problems,
    not_done_by,
    pass_app,
    when_refused,
)
from newsletter.core.envfile import env_file_path, new_unsubscribe_secret
from newsletter.core.paths import ProjectPaths
from newsletter.core.project import init_project, resolve_issue_path
from newsletter.core.settings import UNSUBSCRIBE_SECRET_ENV
from newsletter.review.validate import check_project

if TYPE_CHECKING:
    from newsletter.content.new_project import TeamDetails

SAMPLE_ISSUE = "2023-05-panel-reports"


@when_refused("fix them before sending")
@click.command()
@click.argument("issues", nargs=-1, metavar="[ISSUE]...")
@click.option("--quiet", "-q", is_flag=True, help="Print errors only, not warnings.")
@click.option("--verbose", "-v", is_flag=True, help="List every warning, even when many are alike.")
@pass_app
def validate(app: AppContext, issues: tuple[str, ...], quiet: bool, verbose: bool) -> None:
    """Check settings, catalogue, recipients, segments and issues.

    Every problem is printed as path:line:column: message. Exits 0 when there
    are no errors (warnings allowed) and 1 when there is any error. With
    ISSUE (an id, the file name in issues/, or a path), only those issues are
    checked, with the shared files they depend on.
    """
    root_dir = app.project_dir()
    paths = [resolve_issue_path(ProjectPaths(root_dir.resolve()), issue) for issue in issues]
    checked = check_project(root_dir, paths)
    problems = checked.problems
    errors = [p for p in problems if p.is_error]
    warnings = [p for p in problems if not p.is_error]
    echo_problems(problems, verbose or app.verbose, errors_only=quiet)
    if checked.route is not None and not quiet:
        click.echo(checked.route)
    counted = f"{len(errors)} error(s), {len(warnings)} warning(s)"
    if errors:
        summary = content_error_summary(problems, not_done_by(validate))
        click.echo(f"newsletter: {summary} ({counted})", err=True)
        raise SystemExit(1)
    click.echo(f"OK: {counted}")


def _team_details(organisation: str | None, from_address: str | None) -> TeamDetails:
    """The options, or answers typed at a terminal; without a terminal the options are needed."""
    # A new team's skeleton (50 ms of imports) is loaded by `init` alone, not `validate`.
    from newsletter.content.new_project import TeamDetails

    missing = [
        option
        for option, value in (("--organisation", organisation), ("--from-address", from_address))
        if value is None
    ]
    if missing and not sys.stdin.isatty():
        raise click.UsageError(
            f"give {' and '.join(missing)} (there is no terminal to ask at), e.g. newsletter "
            'init news --organisation "Exampletown Safeguarding Children Partnership" '
            "--from-address comms@example.org; or --sample for the walk-through's sample"
        )
    if organisation is None:
        organisation = click.prompt("Your organisation's name, as readers should see it")
    if from_address is None:
        from_address = click.prompt("The address the newsletter is sent from")
    return TeamDetails(organisation, from_address)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--organisation", metavar="NAME", help="Your organisation's name, as readers see it.")
@click.option("--from-address", metavar="ADDRESS", help="The address the newsletter is sent from.")
@click.option(
    "--sample",
    is_flag=True,
    help="The walk-through's sample instead: the May 2023 issue, approved, 67 example people.",
)
def init(directory: Path, organisation: str | None, from_address: str | None, sample: bool) -> None:
    """Create a project for your team in DIRECTORY (new or empty).

    It has your organisation's name and sender address, recipient lists with
    the right columns and nobody in them, and one draft issue to start from;
    at a terminal it asks for what the options do not give. --sample makes
    the sample project the README's walk-through uses instead.
    """
    if sample:
        created = init_project(directory)
        next_step = f"cd {directory} && newsletter validate && newsletter preview {SAMPLE_ISSUE}"
    else:
        from newsletter.content.new_project import init_team_project

        team = init_team_project(directory, _team_details(organisation, from_address))
        created, draft = list(team.created), team.draft.stem
        next_step = (
            f"cd {directory}, add your people to recipients/lists/practitioners.csv, write "
            f"issues/{draft}.yaml, then: newsletter validate && newsletter preview {draft}"
        )
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"\nNext: {next_step}")


@click.command()
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the secret already there (links in emails already sent stop working).",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="NEWSLETTER_ENV_FILE, else ~/.config/newsletter/newsletter.env",
    help="The environment file to write the secret into.",
)
def secret(replace: bool, env_file: Path | None) -> None:
    """Write a new random unsubscribe secret into the environment file.

    The secret signs the one-click unsubscribe links, and the Message-IDs,
    return paths and mailto references that let `inbox` tell our own
    messages' bounces from forgeries. It goes into
    ~/.config/newsletter/newsletter.env (or the file NEWSLETTER_ENV_FILE
    names), readable by you only, where every command, cron and systemd read it.
    """
    path = new_unsubscribe_secret(env_file or env_file_path(), replace=replace)
    click.echo(
        f"wrote a new {UNSUBSCRIBE_SECRET_ENV} to {path} (readable by you only); every newsletter "
        "command, and the cron and systemd set-ups, read it from there"
    )


COMMANDS: list[click.Command] = [validate, init, secret]
