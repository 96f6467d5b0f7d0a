"""Commands that start and approve an issue: new, approve."""

from __future__ import annotations

import click

from newsletter.cli.common import (
    AppContext,
    echo_problems,
    issue_argument,
    pass_app,
    when_refused,
)
from newsletter.content.new_issue import new_issue, outdated_dates
from newsletter.review.approval import approve_issue


@when_refused("no issue was written")
@click.command(name="new")
@click.argument("issue_id", metavar="ID")
@click.option(
    "--from",
    "from_issue",
    metavar="EARLIER",
    help="Copy the sections, audience, reply-to and wording of this earlier issue (id or path).",
)
@pass_app
def new(app: AppContext, issue_id: str, from_issue: str | None) -> None:
    """Start a new issue: write issues/ID.yaml with today's date, unscheduled and unapproved.

    ID becomes the file name, so use lower-case letters, digits and hyphens,
    e.g. 2023-08-news-update. With --from, everything but the id, date,
    send_at and approval is copied from the earlier issue, comments included.
    An existing file is never overwritten.
    """
    project = app.project()
    path = new_issue(project, issue_id, from_issue)
    click.echo(f"created {path}")
    echo_problems(outdated_dates(path), app.verbose)
    click.echo(
        f"Next: edit it, check it with `newsletter preview {issue_id}`, add `send_at` when "
        f"it is ready, then `newsletter approve {issue_id} --by NAME`."
    )


@when_refused("nothing was approved")
@click.command()
@issue_argument
@click.option(
    "--by",
    "by",
    required=True,
    metavar="NAME",
    help="Your name as the team knows you; recorded with the time in approvals/ISSUE.yaml.",
)
@pass_app
def approve(app: AppContext, issue: str, by: str) -> None:
    """Approve ISSUE for sending, as NAME, exactly as the files stand now.

    Records who approved and when, with a fingerprint of the issue, the
    catalogue entries it uses, the email templates, the settings that show in
    the email and the segment rules, in approvals/ISSUE.yaml (commit it with
    the issue). `send --send` and `dispatch` refuse the issue if any of those
    change afterwards. An issue with content errors cannot be approved.
    """
    project = app.project()
    done = approve_issue(project, issue, by)
    status = done.status
    zone = project.settings.zone
    name = status.issue_path.name
    if done.written:
        click.echo(
            f"{name} approved by {done.approval.by} (login {done.approval.account}) at "
            f"{done.approval.when(zone)}"
        )
        click.echo(f"recorded in {done.record_path}; commit it with the issue")
    else:
        click.echo(
            f"{name} was already approved by {done.approval.by} at "
            f"{done.approval.when(zone)}, and nothing has changed since; nothing written"
        )
    if status.missing:
        click.echo(
            f"{status.required} different approvers are needed and {len(status.counted)} "
            f"approved; someone else must check it and run: {status.approve_command}"
        )
    if done.says_approved:
        click.echo(
            f"note: {name} still says `approved: true`; that line no longer counts. "
            "Removing it is a change, so approve again afterwards.",
            err=True,
        )


COMMANDS: list[click.Command] = [new, approve]
