"""`newsletter serve`: the web application behind `unsubscribe.url`."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from newsletter.cli.common import AppContext, pass_app
from newsletter.schedule.cron import DEFAULT_ENV_FILE, serve_unit
from newsletter.web.serve import make_app, serve_options_from_environment
from newsletter.web.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_THREADS,
    ServerOptions,
    run_server,
)


@click.command()
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to listen on; keep 127.0.0.1 and put a reverse proxy in front for HTTPS.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0 picks a free one and prints it).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=DEFAULT_THREADS,
    show_default=True,
    help="Requests answered at the same time.",
)
@click.option(
    "--systemd",
    "print_unit",
    is_flag=True,
    help="Print a systemd service that runs this command (with these options) and exit.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=str(DEFAULT_ENV_FILE),
    show_default=True,
    help="With --systemd: the file of NAME=value lines holding NEWSLETTER_UNSUBSCRIBE_SECRET.",
)
@pass_app
def serve(
    app: AppContext, host: str, port: int, threads: int, print_unit: bool, env_file: Path
) -> None:
    """Answer one-click unsubscribe links (and provider webhooks) over HTTP.

    Serves the path of `unsubscribe.url` from newsletter.yaml: a GET shows a
    confirmation page, a POST (RFC 8058 one-click, or the page's button)
    adds the address to recipients/suppressed.csv. Links are checked against
    NEWSLETTER_UNSUBSCRIBE_SECRET, which must be the one `send` and
    `dispatch` used. With NEWSLETTER_POSTMARK_WEBHOOK_USERNAME/_PASSWORD (or
    MAILJET) set, /webhooks/postmark (or /webhooks/mailjet) takes bounces,
    complaints and unsubscribes too. Runs until stopped (Ctrl-C or SIGTERM).
    """
    project = app.project()
    if print_unit:
        click.echo(serve_unit(project, host=host, port=port, env_file=env_file).as_text())
        return
    logging.basicConfig(
        level=logging.DEBUG if app.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    wsgi_app = make_app(project, serve_options_from_environment(project.settings))

    def ready(base_url: str) -> None:
        routes = []
        if wsgi_app.unsubscribe_path:
            routes.append(f"one-click unsubscribe at {base_url}{wsgi_app.unsubscribe_path}")
        else:
            routes.append("no unsubscribe.url in newsletter.yaml, so no one-click unsubscribe")
        for provider in wsgi_app.options.webhooks:
            routes.append(f"{provider} webhook at {base_url}/webhooks/{provider}")
        click.echo(f"newsletter serve: listening on {base_url}")
        for route in routes:
            click.echo(f"  {route}")
        click.echo("Press Ctrl-C to stop.", nl=True)

    run_server(wsgi_app, ServerOptions(host=host, port=port, threads=threads), on_ready=ready)


COMMANDS: list[click.Command] = [serve]
