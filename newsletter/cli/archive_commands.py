"""The `archive` command: build the "Learning from Practice" static site."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import AppContext, pass_app
from newsletter.web.archive import build_archive


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the site.  [default: site/ in the project directory]",
)
@click.option("--drafts", is_flag=True, help="Include issues that are not approved yet.")
@pass_app
def archive(app: AppContext, out_dir: Path | None, drafts: bool) -> None:
    """Build the archive site: every approved issue and the publications catalogue.

    Writes plain files (home page, one page per issue at the address the
    emails' "View in browser" link uses, publications, themes, an Atom feed
    and a search index) that any web server can serve, or that open from
    disk. Building twice gives identical files.
    """
    project = app.project()
    target = out_dir if out_dir is not None else project.paths.site_dir
    files = build_archive(project, target, drafts=drafts)
    pages = sum(1 for path in files if path.suffix == ".html")
    click.echo(f"Built {pages} pages ({len(files)} files) in {target}")
    click.echo(
        f"Open {target / 'index.html'}, or publish it at {project.settings.archive_base_url}"
    )


COMMANDS: list[click.Command] = [archive]
