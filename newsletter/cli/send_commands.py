"""Commands that deliver an issue and say what happened: send, report, retry.

`send --send` and `retry` send only an issue approved as the files stand now
and as the run renders it: the send run itself checks (`delivery/gate.py`),
and these commands ask the same before the prompt. The dry run and
`--test-to` need no approval, since they are how people check an issue
before approving it.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import getaddresses
from typing import Any

import click

from newsletter.cli.common import (
    AppContext,
    csv_text,
    echo_json,
    format_option,
    issue_argument,
    pass_app,
    table_text,
)
from newsletter.content.issue import Issue
from newsletter.core.errors import Interrupted, NewsletterError
from newsletter.core.project import Project
from newsletter.delivery.daily_cap import cap_reached_line
from newsletter.delivery.gate import check_before_opening
from newsletter.delivery.plan import SendPlan, plan_send
from newsletter.delivery.proofs import proof_addresses, send_test_copies
from newsletter.delivery.report import delivery_report
from newsletter.delivery.send import resend_unknown, retry_issue, send_issue
from newsletter.delivery.send_options import SendOptions, SendProgress, SendResult
from newsletter.review.approval import check_approval
from newsletter.transports import TRANSPORT_NAMES
from newsletter.transports.lookup import describe_transport
from newsletter.web.outbox_view import outbox_hint

LOG_EVERY = 500
EXIT_FAILED = 1  # some deliveries failed (ARCHITECTURE.md's exit codes)


def _send_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--transport, --concurrency, --rate and --limit, handed on as one `options: SendOptions`."""

    @functools.wraps(function)
    def command(
        *args: Any,
        transport_name: str | None,
        concurrency: int | None,
        rate: float | None,
        limit: int | None,
        **kwargs: Any,
    ) -> Any:
        options = SendOptions(transport_name, concurrency, rate, limit)
        return function(*args, options=options, **kwargs)

    for option in reversed(
        [
            click.option(
                "--transport",
                "transport_name",
                type=click.Choice(TRANSPORT_NAMES),
                help="How to deliver (default: `transport` in newsletter.yaml).",
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(min=1),
                help="Connections in parallel (default: smtp.connections for SMTP, else 1).",
            ),
            click.option(
                "--rate",
                type=click.FloatRange(min=0),
                help="Messages per second; 0 for no limit (default: rate.per_second in newsletter.yaml).",
            ),
            click.option(
                "--limit", type=click.IntRange(min=0), help="Send at most N messages in this run."
            ),
        ]
    ):
        command = option(command)
    return command


@contextmanager
def _progress_reporter() -> Iterator[Callable[[SendProgress], None]]:
    """A progress bar on a terminal; otherwise a plain line every LOG_EVERY messages."""
    interactive = sys.stderr.isatty()
    bar: Any = None
    last_logged = 0

    def report(progress: SendProgress) -> None:
        nonlocal bar, last_logged
        if interactive:
            if bar is None:
                bar = click.progressbar(length=progress.total, label="Sending", file=sys.stderr)
                bar.__enter__()
            bar.update(progress.done - bar.pos)
        elif progress.done - last_logged >= LOG_EVERY or progress.done == progress.total:
            last_logged = progress.done
            click.echo(
                f"sent {progress.sent}, failed {progress.failed}"
                + (f", unknown {progress.unknown}" if progress.unknown else "")
                + f" ({progress.done}/{progress.total})",
                err=True,
            )

    try:
        yield report
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _require_approval(project: Project, issue: Issue) -> None:
    """Refuse before the prompt what the run's gate would refuse (exit 1); warn if legacy.

    The run checks again itself (`delivery/gate.py`), after rendering: this
    only spares the person a question whose answer could not be used.
    """
    status = check_before_opening(project, issue)
    if status.warning:
        click.echo(f"warning: {status.warning}", err=True)


def _test_to_addresses(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """--test-to, repeated or as a list pasted from Outlook, each address checked.

    Commas and semicolons both separate addresses, and `Name <a@x.org>` gives
    a@x.org (email.utils reads the list, quotes and all); a bad one is a usage error.
    """
    if not values:
        return ()
    addresses: list[str] = []
    for value in values:
        # getaddresses knows commas, quotes and names; Outlook separates with semicolons.
        parsed = getaddresses([value.replace(";", ",")])
        found = [address for _, address in parsed if address]
        # An empty entry is a stray separator, unless an address was lost in it:
        # then each part is checked as written, so the message names it.
        if any(not a for _, a in parsed) and value.count("@") > "".join(found).count("@"):
            found = [part.strip() for part in re.split(r"[,;]", value) if part.strip()]
        if any(address.count("@") > 1 and len(address.split()) > 1 for address in found):
            raise click.BadParameter(
                f"`{value}` is not one email address or a list of them; separate addresses "
                'with commas or semicolons, e.g. --test-to "me@example.org; Jo <jo@example.org>"',
                ctx=ctx,
                param=param,
            )
        addresses += found
    try:
        return proof_addresses(addresses)
    except NewsletterError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


def _echo_plan(plan: SendPlan) -> None:
    click.echo(f"Issue:      {plan.issue_id}")
    click.echo(f"Subject:    {plan.subject}")
    click.echo(f"Transport:  {plan.transport} ({plan.concurrency} connection(s))")
    click.echo(f"Route:      {plan.route}")
    click.echo(f"Rate:       {plan.rate}")
    click.echo(f"Recipients: {plan.recipients}")
    for variant in plan.variants:
        click.echo(f"  {variant.recipients:>6}  {variant.label} ({variant.key})")
    click.echo(f"Suppressed: {plan.suppressed}")
    click.echo(f"Duplicates merged: {plan.duplicates_merged}")
    if plan.invalid:
        click.echo(f"Invalid addresses skipped: {plan.invalid}")
    click.echo(f"Already sent (ledger): {plan.already_sent}")
    limit = f" (limited to {plan.limit})" if plan.limit is not None else ""
    click.echo(f"Would send now: {plan.to_send}{limit}")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)


def _deliver(
    deliver: Callable[..., SendResult],
    project: Project,
    issue: Issue,
    options: SendOptions,
    output_format: str,
) -> bool:
    """Run `send_issue` or `retry_issue` with progress shown, then say what happened.

    True when nobody in the run is left undelivered.
    """
    try:
        with _progress_reporter() as progress:
            result = deliver(project, issue, options, progress=progress)
    except Interrupted as stopped:
        # Stopped cleanly on SIGTERM or Ctrl-C: say what was done, exit 128 + the signal.
        click.echo(f"newsletter: {stopped}", err=True)
        raise SystemExit(stopped.exit_code) from None
    if output_format == "json":
        echo_json(result.as_dict())
        return result.ok
    doubt = f"unknown outcome {result.unknown}; " if result.unknown else ""
    gave_up = f"given up on {result.gave_up}; " if result.gave_up else ""
    click.echo(
        f"Sent {result.sent}; failed permanently {result.failed_permanent}; {doubt}{gave_up}"
        f"waiting to retry {result.failed_temporary}; suppressed {result.suppressed}; "
        f"already sent before {result.skipped_already_sent}."
    )
    if result.recovered:
        click.echo(
            f"{result.recovered} message(s) were in flight (handed to the relay, no answer) "
            "when an earlier run stopped; they were sent again with the same Message-ID, so "
            "those people may get this issue twice."
        )
    for failure in result.failures:
        click.echo(f"  {failure.state}: {failure.email}: {failure.detail}", err=True)
    for address in result.hard_bounced:
        click.echo(f"  added to suppressed.csv (hard bounce): {address}", err=True)
    if result.failed_temporary:
        click.echo(
            f"Run `newsletter retry {result.issue_id}` later to try the temporary failures again.",
            err=True,
        )
    if result.unknown_in_ledger:
        click.echo(
            f"{result.unknown_in_ledger} message(s) were handed over but never confirmed: they "
            "may have arrived, so nothing sends them again unless you run "
            f"`newsletter retry {result.issue_id} --unknown`.",
            err=True,
        )
    if result.daily_cap is not None:
        # Not a failure (exit 0): the ledger keeps the rest for the next run.
        cap = cap_reached_line(result.daily_cap, project.settings.zone, time.time())
        click.echo(
            f"{cap[0].upper()}{cap[1:]}. Run the same command again then, or let "
            "`newsletter dispatch` carry on.",
            err=True,
        )
    return result.ok


# --- the three modes of `send` ------------------------------------------------


def _dry_run(project: Project, issue: Issue, options: SendOptions, output_format: str) -> bool:
    """Print the plan and whether the issue is approved; send and write nothing."""
    plan = plan_send(project, issue, options)
    status = check_approval(project, issue)
    zone = project.settings.zone
    if output_format == "json":
        echo_json({**plan.as_dict(), "approved": status.approved, "approval": status.summary(zone)})
        return True
    _echo_plan(plan)
    click.echo(f"Approval:   {status.summary(zone)}")
    if not status.approved:
        click.echo(f"--send will refuse it: {status.refusal(zone)}", err=True)
    click.echo("\nThis was a dry run: nothing was sent. Add --send to send it.")
    return True


def _test_copies(
    project: Project,
    issue: Issue,
    addresses: tuple[str, ...],
    options: SendOptions,
    output_format: str,
) -> bool:
    """Send one test copy of each variant to each address; record nothing."""
    copies = send_test_copies(project, issue, addresses, options)
    if output_format == "json":
        echo_json(
            {"issue": issue.id, "to": list(addresses), "copies": [c.as_dict() for c in copies]}
        )
    else:
        for copy in copies:
            result = copy.result
            where = f" -> {copy.location}" if copy.location else ""
            detail = f" ({result.detail})" if result.detail else ""
            click.echo(
                f"{result.status}: test copy [TEST: {copy.label}] ({copy.variant.label}) "
                f"to {copy.address}{where}{detail}"
            )
    return all(copy.result.ok for copy in copies)


def _real_send(
    project: Project, issue: Issue, options: SendOptions, output_format: str, *, confirm: bool
) -> bool:
    """Send to the audience if it is approved, after showing the plan and asking, if `confirm`."""
    _require_approval(project, issue)
    if confirm:
        plan = plan_send(project, issue, options)
        _echo_plan(plan)
        click.confirm(f"\nSend {issue.id} to {plan.to_send} people now?", abort=True)
    return _deliver(send_issue, project, issue, options, output_format)


@click.command()
@issue_argument
@click.option("--send", "really_send", is_flag=True, help="Really send (default: a dry run).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation before sending.")
@click.option(
    "--test-to",
    metavar="ADDRESS",
    multiple=True,
    callback=_test_to_addresses,
    help="Send one [TEST] copy of each variant to ADDRESS only (repeat the option, or "
    "separate addresses with commas or semicolons, as Outlook does); nothing is recorded "
    "and no approval is needed.",
)
@_send_options
@format_option("table", "json")
@pass_app
def send(
    app: AppContext,
    issue: str,
    really_send: bool,
    yes: bool,
    test_to: tuple[str, ...],
    options: SendOptions,
    output_format: str,
) -> None:
    """Send ISSUE to its audience, exactly once per person (a dry run unless --send).

    The dry run prints the plan: recipients per variant, suppressed people,
    duplicates merged, the transport and the rate; it writes nothing. With
    --send, every delivery is recorded in the ledger, so running it again
    (after a crash, or Ctrl-C) only sends to the people not yet sent to.
    --send asks first unless --yes; with --format json it needs --yes.
    --send refuses an issue that is not approved, or changed since it was
    (`newsletter approve`). Exits 1 if any delivery failed or its outcome is
    unknown; 130 or 143 when stopped by Ctrl-C or SIGTERM (run it again to
    continue).
    """
    if really_send and not test_to and not yes and output_format == "json":
        # The prompt (and the plan shown with it) would spoil the JSON, and a
        # script cannot answer it anyway.
        raise click.UsageError(
            "--send --format json needs --yes: a script reading JSON cannot answer the prompt"
        )
    project = app.project()
    loaded = project.load_issue(issue)
    if app.verbose:
        click.echo(f"Ledger: {project.settings.ledger_path}", err=True)
        click.echo(f"Delivery: {describe_transport(project.settings, options.transport)}", err=True)
    if test_to:
        ok = _test_copies(project, loaded, test_to, options, output_format)
    elif really_send:
        ok = _real_send(project, loaded, options, output_format, confirm=not yes)
    else:
        ok = _dry_run(project, loaded, options, output_format)
    hint = outbox_hint(project.settings, options.transport)
    if (test_to or really_send) and output_format == "table" and hint:
        click.echo(hint)
    if not ok:
        raise SystemExit(EXIT_FAILED)


@click.command()
@issue_argument
@click.option(
    "--unknown",
    "unknown",
    is_flag=True,
    help="Instead, send once more to the people whose outcome is unknown (the relay took the "
    "whole message and never confirmed it): they may get it twice.",
)
@_send_options
@format_option("table", "json")
@pass_app
def retry(
    app: AppContext, issue: str, unknown: bool, options: SendOptions, output_format: str
) -> None:
    """Send ISSUE again to the people whose delivery failed temporarily.

    Only the ledger's failed-temporary rows (and those given up on after
    retry.max_total_attempts) are tried; people already sent to, permanent
    failures and unknown outcomes are left alone. With --unknown, only the
    unknown outcomes are sent, once. Like `send --send`, it refuses an issue
    changed since it was approved. Exits 1 if any delivery still failed, 130
    or 143 when stopped by Ctrl-C or SIGTERM.
    """
    project = app.project()
    loaded = project.load_issue(issue)
    _require_approval(project, loaded)
    if app.verbose:
        click.echo(f"Delivery: {describe_transport(project.settings, options.transport)}", err=True)
    deliver = resend_unknown if unknown else retry_issue
    if not _deliver(deliver, project, loaded, options, output_format):
        raise SystemExit(EXIT_FAILED)


@click.command()
@issue_argument
@format_option("table", "json", "csv")
@pass_app
def report(app: AppContext, issue: str, output_format: str) -> None:
    """Say who got ISSUE: each recipient's status, counted, with every failure.

    A status is sent, bounced-later, complained or unsubscribed (what came
    back after sending, read by `newsletter inbox` and `newsletter serve`),
    failed, to-retry, pending or suppressed. --format csv or json lists every
    recipient with their status and its reason. ISSUE is the issue's id or file.
    """
    data = delivery_report(app.project(), issue)
    if output_format == "json":
        echo_json(data.as_dict())
        return
    if output_format == "csv":
        rows = [(r.email, r.status, r.reason, r.at or "") for r in data.recipients]
        click.echo(csv_text(("email", "status", "reason", "at"), rows), nl=False)
        return
    summary = data.summary
    click.echo(f"Delivery of {summary.issue_id}")
    click.echo(f"Started: {summary.started_at or '-'}   Finished: {summary.finished_at or '-'}\n")
    click.echo(table_text(("status", "recipients"), list(data.status_counts().items())))
    if data.per_segment:
        states = list(summary.counts)
        click.echo("")
        click.echo(
            table_text(
                ("segment", *states),
                [(name, *(c[s] for s in states)) for name, c in data.per_segment.items()],
            )
        )
    if data.failures:
        click.echo("")
        click.echo(
            table_text(
                ("recipient", "state", "attempts", "error"),
                [(f.email, f.state, f.attempts, f.detail) for f in data.failures],
            )
        )
    if data.unverified:
        click.echo(
            f"\nCame back but proved nothing, so nothing was changed: check these "
            f"{len(data.unverified)} by hand (a real bounce from an old message, or a forgery):"
        )
        click.echo(
            table_text(
                ("what", "address", "received", "why not acted on"),
                [
                    (e.kind, e.address or "-", f"{e.recorded_at:%Y-%m-%d %H:%M}", e.unverified)
                    for e in data.unverified
                ],
            )
        )
    for hint in data.hints():
        click.echo(f"\n{hint}.")
    click.echo(
        f"\nEvery recipient with the reason: newsletter report {summary.issue_id} --format csv"
    )


COMMANDS: list[click.Command] = [send, retry, report]
