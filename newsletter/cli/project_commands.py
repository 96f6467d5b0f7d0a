"""Commands that set up and check a project: init, validate."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import (
    AppContext,
    content_error_summary,
    echo_problems,
    not_done_by,
    pass_app,
    when_refused,
)
from newsletter.core.envfile import UNSUBSCRIBE_SECRET, env_file_path, new_unsubscribe_secret
from newsletter.core.paths import ProjectPaths
from newsletter.core.project import init_project, resolve_issue_path
from newsletter.review.validate import route_line, validate_project


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
    problems = validate_project(root_dir, paths)
    errors = [p for p in problems if p.is_error]
    warnings = [p for p in problems if not p.is_error]
    echo_problems(problems, verbose or app.verbose, errors_only=quiet)
    route = route_line(root_dir)
    if route is not None and not quiet:
        click.echo(route)
    counted = f"{len(errors)} error(s), {len(warnings)} warning(s)"
    if errors:
        summary = content_error_summary(problems, not_done_by(validate))
        click.echo(f"newsletter: {summary} ({counted})", err=True)
        raise SystemExit(1)
    click.echo(f"OK: {counted}")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a working project in DIRECTORY from the bundled sample.

    The sample is the May 2023 Panel reports issue with its catalogue, sample
    recipient lists and the default templates; it passes `newsletter validate`.
    """
    created = init_project(directory)
    for path in created:
        click.echo(f"created {path}")
    click.echo(
        f"\nNext: cd {directory} && newsletter validate && newsletter audience 2023-05-panel-reports"
    )


@click.command()
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the secret already there (links in emails already sent stop working).",
)
def secret(replace: bool) -> None:
    """Write a new random unsubscribe secret into the environment file.

    The secret signs the one-click unsubscribe links. It goes into
    ~/.config/newsletter/newsletter.env (or the file NEWSLETTER_ENV_FILE
    names), readable by you only, where every command, cron and systemd read it.
    """
    path = new_unsubscribe_secret(env_file_path(), replace=replace)
    click.echo(
        f"wrote a new {UNSUBSCRIBE_SECRET} to {path} (readable by you only); every newsletter "
        "command, and the cron and systemd set-ups, read it from there"
    )


COMMANDS: list[click.Command] = [validate, init, secret]
