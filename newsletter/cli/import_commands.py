"""The command that starts an issue from a briefing paper: import."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import AppContext, pass_app, when_refused
from newsletter.content.importing import ImportResult, import_briefing


@when_refused("nothing was written")
@click.command(name="import")
@click.argument("source", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--id",
    "issue_id",
    metavar="ID",
    help="The new issue's id (its file name); by default the paper's month and title.",
)
@click.option(
    "--from",
    "from_issue",
    metavar="ISSUE",
    help="Take the audience and reply-to from this issue; by default from the most recent one.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the issue and the catalogue entries it would write; write nothing.",
)
@pass_app
def import_(
    app: AppContext, source: Path, issue_id: str | None, from_issue: str | None, dry_run: bool
) -> None:
    """Start an issue from the briefing paper FILE (.docx, .md or the exported .txt).

    Writes issues/ID.yaml as a draft (not scheduled, not approved) holding the
    paper's sections, bullets, prompts and links in the paper's order, and adds
    the publications table's new reports to issues/publications.yaml. Anything
    that does not fit the usual structure is kept where it stood and listed as
    a warning to check. An existing issue is never overwritten.
    """
    result = import_briefing(
        app.project(), source, issue_id=issue_id, from_issue=from_issue, dry_run=dry_run
    )
    if dry_run:
        click.echo(result.issue_yaml, nl=False)
    _report(result)


def _report(result: ImportResult) -> None:
    verb = "created" if result.written else "would create"
    click.echo(f"{verb} {result.issue_path}", err=result.written is False)
    add = "added" if result.written else "would add"
    for entry in result.catalogue_added:
        click.echo(
            f"{add} to the catalogue: {entry.id} ({entry.type}, {entry.published}) {entry.title}",
            err=not result.written,
        )
    matched = len(result.catalogue_matched)
    if matched:
        are = (
            "publication of the paper's table is"
            if matched == 1
            else "publications of the paper's table are"
        )
        click.echo(f"{matched} {are} already in the catalogue", err=not result.written)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.warnings:
        places = (
            "place of the paper needs" if len(result.warnings) == 1 else "places of the paper need"
        )
        click.echo(
            f"{len(result.warnings)} {places} checking by a person (listed above, and at the "
            "top of the issue file)",
            err=True,
        )
    if result.written:
        click.echo(
            f"Next: check it with `newsletter preview {result.issue_id}`, add `send_at` when it "
            f"is ready, then `newsletter approve {result.issue_id} --by NAME`."
        )
    else:
        click.echo("dry run: nothing was written", err=True)


COMMANDS: list[click.Command] = [import_]
