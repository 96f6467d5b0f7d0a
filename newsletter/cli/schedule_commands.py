"""Commands for sending on a schedule: dispatch, schedule, cron."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from newsletter.cli.common import AppContext, echo_json, format_option, pass_app, table_text
from newsletter.schedule.due import issue_schedule, parse_now
from newsletter.transports import TRANSPORT_NAMES

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
    # Imported here: sending pulls in transports and rendering `schedule` does without.
    from newsletter.schedule.dispatch import DispatchOptions, run_dispatch

    project = app.project()
    options = DispatchOptions(
        dry_run=dry_run, catch_up=catch_up, wait=wait, transport=transport_name
    )
    run = run_dispatch(project, options, now=_now(app, now_text))
    for line in run.summary_lines():
        click.echo(line)
    for outcome in run.outcomes:
        for error in outcome.unsaid_errors:
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
    short of approvers), sending (part-sent n of m: an interrupted or
    capped send), sent, failed, invalid or overdue (held: further past
    send_at than the catch-up window). The approval column says who approved
    it and when, or what changed since.
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
    default=None,
    show_default="NEWSLETTER_ENV_FILE, else ~/.config/newsletter/newsletter.env",
    help="File of NAME=value lines holding secrets such as NEWSLETTER_SMTP_PASSWORD.",
)
@click.option(
    "--systemd", is_flag=True, help="Print systemd services and timers, not crontab lines."
)
@pass_app
def cron(app: AppContext, env_file: Path | None, systemd: bool) -> None:
    """Print what this project needs to run on its own: crontab lines (or systemd timers).

    dispatch every 5 minutes always; inbox every 15 only when a bounce
    mailbox (inbox.imap) is set up; the service that keeps `newsletter serve`
    up only when one-click unsubscribe or a provider webhook needs it.
    """
    from newsletter.schedule.cron import cron_setup, needs_serve  # `schedule` needs neither
    from newsletter.web.serve import DEFAULT_HOST, DEFAULT_PORT  # werkzeug, waitress

    project = app.project()
    serve_at = (DEFAULT_HOST, DEFAULT_PORT) if needs_serve(project, os.environ) else None
    setup = cron_setup(project, env_file=env_file, serve_at=serve_at)
    click.echo(setup.as_text(systemd=systemd))


COMMANDS: list[click.Command] = [dispatch, schedule, cron]
