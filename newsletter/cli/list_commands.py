"""Commands about who gets mail: audience, unsubscribe, resubscribe."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from newsletter.audience.lists import count_audience, lists_containing
from newsletter.audience.suppression import SUPPRESSION_REASONS
from newsletter.cli.common import (
    AppContext,
    csv_text,
    echo_json,
    format_option,
    issue_argument,
    pass_app,
    table_text,
    when_refused,
)
from newsletter.core.checks import email_problem
from newsletter.core.errors import NewsletterError
from newsletter.ledger.list_events import leave, list_files, rejoin, why_left


@when_refused("the audience was not counted")
@click.command()
@issue_argument
@format_option("table", "json", "csv")
@pass_app
def audience(app: AppContext, issue: str, output_format: str) -> None:
    """Show who would get ISSUE: totals, per segment, per variant, merged and suppressed.

    ISSUE is a path to an issue file or its id (the file name in issues/).
    """
    project = app.project()
    loaded = project.load_issue(issue)
    counts = count_audience(project.audience_source(), loaded)
    data = {"issue": loaded.id, **counts.as_dict()}
    if output_format == "json":
        echo_json(data)
        return
    rows: list[tuple[str, str, object]] = [
        ("total", "recipients", counts.recipients),
        ("total", "duplicates merged", counts.duplicates_merged),
        ("total", "suppressed", counts.suppressed),
    ]
    rows += [("segment", name, n) for name, n in sorted(counts.per_segment.items())]
    rows += [("variant", v["label"], v["recipients"]) for v in data["per_variant"]]
    if output_format == "csv":
        click.echo(csv_text(("kind", "name", "count"), rows), nl=False)
        return
    click.echo(f"Audience for {loaded.id}: {loaded.title}\n")
    click.echo(table_text(("kind", "name", "count"), rows))


# Reasons that say the address does not want, or cannot take, our mail: taking one
# off the list is a decision, so resubscribe asks for --force.
NEEDS_FORCE = {
    "hard-bounce": "mail to it failed permanently (a hard bounce)",
    "complaint": "its owner reported our mail as spam (a complaint)",
}


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
    if leave(list_files(project), address, reason, "cli", datetime.now(UTC)):
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
    files = list_files(app.project())
    reason = why_left(files, address)
    if reason in NEEDS_FORCE and not force:
        raise NewsletterError(
            f"{address} was suppressed because {NEEDS_FORCE[reason]}; if you are sure it "
            f"should get mail again, run: newsletter resubscribe {address} --force"
        )
    if rejoin(files, address, "cli", datetime.now(UTC)):
        click.echo(f"{address} is back on the mailing list from the next issue")
    else:
        click.echo(f"{address} was not on the suppression list; nothing changed")


COMMANDS: list[click.Command] = [audience, unsubscribe, resubscribe]
