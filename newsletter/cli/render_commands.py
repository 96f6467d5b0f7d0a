"""Commands that show the email: render (files on disk) and preview (a local server)."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import AppContext, issue_argument, pass_app
from newsletter.web.render_files import write_rendered_issue


@click.command()
@issue_argument
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the files (default: out/ISSUE-ID/ in the project).",
)
@pass_app
def render(app: AppContext, issue: str, out_dir: Path | None) -> None:
    """Write ISSUE's emails to files: per variant the HTML, the text and a sample .eml.

    Also writes the web version (web.html) and an index.html listing them.
    Refuses (exit 1) if the content is invalid or an email breaks the size,
    safety or accessibility budget. ISSUE is a path to an issue file or its id.
    """
    project = app.project()
    loaded = project.load_issue(issue)
    target = out_dir if out_dir is not None else project.paths.out_dir / loaded.id
    result = write_rendered_issue(project, loaded, target)
    for file in result.variants:
        click.echo(
            f"{file.variant.key}: {file.recipients} recipient(s), "
            f"{file.html_bytes / 1024:.1f} KB HTML -> {file.html_path.name}, "
            f"{file.text_path.name}, {file.eml_path.name} (sample for {file.sample_address})"
        )
    click.echo(f"web version -> {result.web_path}")
    click.echo(f"open {result.index_path}")


@click.command()
@issue_argument
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port on 127.0.0.1 to serve on (0 picks a free one).",
)
@pass_app
def preview(app: AppContext, issue: str, port: int) -> None:
    """Preview ISSUE in a browser, on this computer only (127.0.0.1).

    Shows each variant at desktop and phone widths, the text part and the
    headers, and reloads when you save the issue, settings or a template.
    Content errors are shown on the page. Stop it with Ctrl-C.
    """
    # Imported here: `render` has no use for the web server (werkzeug, waitress: 50 ms).
    from newsletter.web.preview import make_preview

    server = make_preview(app.project(), issue, port)
    click.echo(f"Previewing {issue} at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.server_close()


COMMANDS: list[click.Command] = [render, preview]
