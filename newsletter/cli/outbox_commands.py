"""`newsletter outbox`: what was written to the outbox, and a way to see it as recipients do."""

from __future__ import annotations

import webbrowser

import click

from newsletter.cli.common import AppContext, echo_json, format_option, pass_app, table_text
from newsletter.web.outbox_view import list_outbox, write_outbox_pages

VIEW_DIR = "outbox-view"


@click.command()
@click.option(
    "--open",
    "open_pages",
    is_flag=True,
    help="Write pages showing each message as the recipient sees it, and open them in a browser.",
)
@format_option("table", "json")
@pass_app
def outbox(app: AppContext, open_pages: bool, output_format: str) -> None:
    """List the messages in the outbox: subject, to, when, and a real send or a test copy.

    The outbox is where `send` puts messages when the transport is `outbox`
    (test copies in its tests/ folder): nothing there left this computer.
    --open writes an index page under var/ (private: it names recipients)
    and opens it in your browser.
    """
    project = app.project()
    outbox_dir = project.settings.outbox_dir
    messages = list_outbox(outbox_dir)
    if output_format == "json":
        echo_json([m.as_dict() for m in messages])
        return
    if not messages:
        click.echo(f"The outbox ({outbox_dir}) is empty: nothing has been sent to it yet.")
    else:
        rows = [(f"{m.when:%Y-%m-%d %H:%M}", m.kind, m.to, m.subject) for m in messages]
        click.echo(table_text(("when", "kind", "to", "subject"), rows))
    if open_pages:
        index = write_outbox_pages(messages, outbox_dir, project.paths.var_dir / VIEW_DIR)
        opened = webbrowser.open(index.as_uri())
        click.echo(f"{'Opened' if opened else 'Open this page in your browser:'} {index}")


COMMANDS: list[click.Command] = [outbox]
