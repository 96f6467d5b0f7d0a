"""Commands for sending on a schedule: dispatch, schedule, cron, unsubscribe, resubscribe."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import click

from newsletter.audience.lists import SUPPRESSION_REASONS, lists_containing
from newsletter.audience.suppression import add_suppression, remove_suppression, suppression_reason
from newsletter.cli.common import AppContext, echo_json, format_option, pass_app, table_text
from newsletter.core.checks import email_problem
from newsletter.core.errors import NewsletterError
from newsletter.schedule.cron import DEFAULT_ENV_FILE, cron_setup
from newsletter.schedule.dispatch import DispatchOptions, run_dispatch
from newsletter.schedule.due import issue_schedule, parse_now
from newsletter.transports import TRANSPORT_NAMES
from newsletter.web.serve import DEFAULT_HOST, DEFAULT_PORT

# Reasons that say the address does not want, or cannot take, our mail: taking one
# off the list is a decision, so resubscribe asks for --force.
NEEDS_FORCE = {
    "hard-bounce": "mail to it failed permanently (a hard bounce)",
    "complaint": "its owner reported our mail as spam (a complaint)",
}
NOW_HELP = "Pretend it is this time (ISO 8601, e.g. 2023-05-15T09:00:00+01:00); for testing."


def _now(app: AppContext, text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    return parse_now(text, app.project().settings.zone)


@click.command()
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send and write nothing.")
@click.option(
    "--wait", is_flag=True, help="If another dispatch is running, wait for it instead of exiting."
)
@click.option(
    "--catch-up",
    is_flag=True,
    help="Also send issues more overdue than the catch-up window (dispatch.catch_up_days).",
)
@click.option(
    "--transport",
    "transport_name",
    type=click.Choice(TRANSPORT_NAMES),
    help="Send through this transport instead of the one in newsletter.yaml.",
)
@pass_app
def dispatch(
    app: AppContext,
    now_text: str | None,
    dry_run: bool,
    wait: bool,
    catch_up: bool,
    transport_name: str | None,
) -> None:
    """Send every approved issue whose send_at has passed: the command cron runs.

    Finished issues are left alone and an interrupted run is carried on, so
    it is safe to run every few minutes. Drafts nobody approved are left
    alone. Exits 0 when all is well; 1 when someone must act: content
    errors, failed deliveries, a due issue changed since it was approved, or
    (the first time only) an approved issue held back for being more overdue
    than the catch-up window; 3 when another dispatch is already running.
    Each issue acted on gets a JSON line in var/dispatch.log, and so does an
    error that stops the run.
    """
    project = app.project()
    options = DispatchOptions(
        dry_run=dry_run, catch_up=catch_up, wait=wait, transport=transport_name
    )
    run = run_dispatch(project, options, now=_now(app, now_text))
    for line in run.summary_lines():
        click.echo(line)
    for outcome in run.outcomes:
        for error in outcome.errors:
            click.echo(error, err=True)
        for warning in outcome.warnings:
            click.echo(f"warning: {outcome.issue_id}: {warning}", err=True)
    if run.exit_code:
        raise SystemExit(run.exit_code)


@click.command()
@format_option("table", "json")
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def schedule(app: AppContext, output_format: str, now_text: str | None) -> None:
    """List every issue with its state and approval.

    States: draft, waiting, due, unapproved (changed since approval, or
    short of approvers), sending, sent, failed, invalid or overdue (held:
    further past send_at than the catch-up window). The approval column says
    who approved it and when, or what changed since.
    """
    project = app.project()
    now = _now(app, now_text)
    entries = issue_schedule(project, now)
    zone = project.settings.zone
    if output_format == "json":
        echo_json({"now": now.isoformat(), "issues": [e.as_dict(now, zone) for e in entries]})
        return
    rows = [
        (
            e.issue_id,
            e.send_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if e.send_at else "?",
            e.state,
            e.approval_text(zone),
            e.detail,
        )
        for e in entries
    ]
    click.echo(table_text(("issue", "send at", "state", "approval", "detail"), rows))


@click.command()
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=str(DEFAULT_ENV_FILE),
    show_default=True,
    help="File of NAME=value lines holding secrets such as NEWSLETTER_SMTP_PASSWORD.",
)
@pass_app
def cron(app: AppContext, env_file: Path) -> None:
    """Print crontab lines and systemd units that run dispatch and inbox, and keep serve up.

    dispatch runs every 5 minutes, inbox every 15; the serve service (for
    one-click unsubscribe and provider webhooks) listens on 127.0.0.1:8080:
    `newsletter serve --systemd --port N` prints it for another port.
    """
    setup = cron_setup(app.project(), env_file=env_file, serve_at=(DEFAULT_HOST, DEFAULT_PORT))
    click.echo(setup.as_text())


def _address(value: str) -> str:
    problem = email_problem(value)
    if problem:
        raise click.BadParameter(problem, param_hint="ADDRESS")
    return value.strip()


@click.command()
@click.argument("address")
@click.option(
    "--reason",
    metavar="TEXT",
    default="unsubscribed",
    show_default=True,
    help=f"Why they are leaving the list, kept in recipients/suppressed.csv "
    f"(usually one of: {', '.join(SUPPRESSION_REASONS)}).",
)
@pass_app
def unsubscribe(app: AppContext, address: str, reason: str) -> None:
    """Stop sending to ADDRESS: add it to recipients/suppressed.csv.

    The next dispatch leaves them out, including an issue already part-sent.
    An address on no recipient list is suppressed all the same (it stays out
    if someone adds it to a list later), and the command says so.
    """
    address = _address(address)
    project = app.project()
    path = project.paths.suppressed_path
    if add_suppression(path, address, reason, date.today()):
        click.echo(f"{address} is unsubscribed ({reason}); no further issue will be sent to them")
    else:
        click.echo(f"{address} was already on the suppression list; nothing changed")
    if not lists_containing(project.paths, address):
        click.echo(
            f"note: {address} is not on any recipient list (recipients/lists/*.csv); "
            "it stays suppressed in case it is added to one later"
        )


@click.command()
@click.argument("address")
@click.option(
    "--force",
    is_flag=True,
    help="Take the address off even though it hard-bounced or complained.",
)
@pass_app
def resubscribe(app: AppContext, address: str, force: bool) -> None:
    """Send to ADDRESS again: take it off recipients/suppressed.csv.

    They get future issues if they are on one of the recipient lists. An
    address suppressed for a hard bounce or a spam complaint needs --force:
    mailing it again harms the sender's reputation unless you know it is
    fixed (the mailbox exists again, the person asked to come back).
    """
    address = _address(address)
    path = app.project().paths.suppressed_path
    reason = suppression_reason(path, address)
    if reason in NEEDS_FORCE and not force:
        raise NewsletterError(
            f"{address} was suppressed because {NEEDS_FORCE[reason]}; if you are sure it "
            f"should get mail again, run: newsletter resubscribe {address} --force"
        )
    if remove_suppression(path, address):
        click.echo(f"{address} is back on the mailing list from the next issue")
    else:
        click.echo(f"{address} was not on the suppression list; nothing changed")


COMMANDS: list[click.Command] = [dispatch, schedule, cron, unsubscribe, resubscribe]
