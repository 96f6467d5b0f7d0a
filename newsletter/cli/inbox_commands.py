"""The `inbox` command: act on bounces, complaints and unsubscribe requests that came back."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import AppContext, echo_json, format_option, pass_app, when_refused
from newsletter.inbox.providers import PROVIDERS
from newsletter.inbox.run import InboxReport, process_mailbox, process_provider
from newsletter.inbox.settings import imap_settings
from newsletter.inbox.sources import ImapSource, MaildirSource, MailSource, MboxSource


@when_refused("nothing was read from the inbox")
@click.command()
@click.option(
    "--maildir",
    "maildir_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="Read a saved Maildir (the folder holding cur/ and new/) instead of IMAP.",
)
@click.option(
    "--mbox",
    "mbox_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read a saved mbox file instead of IMAP.",
)
@click.option(
    "--provider",
    "provider_name",
    type=click.Choice(PROVIDERS),
    help="Read bounces and complaints from this provider's API instead of a mailbox.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@format_option("table", "json", default="table")
@pass_app
def inbox(
    app: AppContext,
    maildir_path: Path | None,
    mbox_path: Path | None,
    provider_name: str | None,
    dry_run: bool,
    output_format: str,
) -> None:
    """Act on what comes back: bounces, complaints, unsubscribe requests.

    Reads the IMAP mailbox set in `inbox.imap` (NEWSLETTER_IMAP_HOST,
    NEWSLETTER_IMAP_USERNAME, NEWSLETTER_IMAP_PASSWORD), or a saved Maildir or
    mbox, or a provider's bounce API. Hard bounces, complaints and mailed
    unsubscribe requests go on recipients/suppressed.csv only when they prove
    they answer a message we sent to that address (our signed Message-ID or
    return path, or the signed reference of our unsubscribe link; needs
    NEWSLETTER_UNSUBSCRIBE_SECRET); the rest, and messages that cannot be
    read, are listed for a person (on IMAP, moved to newsletter-needs-a-person).
    Delays are recorded; auto-replies are ignored; anything else is left in
    place and listed. Each message is acted on once, so it is safe to run again.
    """
    chosen = [o for o in (maildir_path, mbox_path, provider_name) if o is not None]
    if len(chosen) > 1:
        raise click.UsageError("choose one of --maildir, --mbox and --provider")
    project = app.project()
    report: InboxReport
    if provider_name is not None:
        report = process_provider(project, provider_name, dry_run=dry_run)
    else:
        source: MailSource
        if maildir_path is not None:
            source = MaildirSource(maildir_path)
        elif mbox_path is not None:
            source = MboxSource(mbox_path)
        else:
            source = ImapSource(imap_settings(project.settings), read_only=dry_run)
        try:
            report = process_mailbox(project, source, dry_run=dry_run)
        finally:
            source.close()
    if output_format == "json":
        echo_json(report.as_dict())
        return
    for line in report.summary_lines():
        click.echo(line)


COMMANDS: list[click.Command] = [inbox]
