"""`newsletter studio`: the browser app for writing, checking, approving and sending an issue."""

from __future__ import annotations

import click

from newsletter.cli.common import AppContext, pass_app
from newsletter.web.studio.server import DEFAULT_HOST, DEFAULT_PORT, run_studio


@click.command()
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to listen on: 127.0.0.1 (or localhost) only, as there is no signing in yet.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option("--no-browser", is_flag=True, help="Print the link but do not open a browser.")
@pass_app
def studio(app: AppContext, host: str, port: int, no_browser: bool) -> None:
    """Write, check, preview, approve and send issues from a web browser.

    Prints one link to open: it holds a key made at each start, so only you
    can use the studio. Runs until Ctrl-C.
    """
    run_studio(
        app.root_dir,
        host,
        port,
        open_browser=not no_browser,
        say=lambda line: click.echo(line),
    )


COMMANDS: list[click.Command] = [studio]
