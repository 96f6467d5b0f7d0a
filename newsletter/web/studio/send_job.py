"""The send the studio starts: `newsletter send ID --send --yes --format json`, under the dispatch lock.

Run as `python -m newsletter.web.studio.send_job ROOT ISSUE_ID` by `jobs.py`,
in its own process so it carries on when the browser tab closes, and stops
cleanly on SIGINT like Ctrl-C. It holds the same lock as `newsletter
dispatch` (`schedule.dispatch_lock.dispatch_lock`) for the whole send, so the two
never send at the same time: if dispatch holds it, this exits at once with
code 3 and says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli import EXIT_LOCK_HELD, cli
from newsletter.core.errors import LockHeldError, NewsletterError
from newsletter.core.project import open_project
from newsletter.schedule.dispatch_lock import dispatch_lock


def main(argv: list[str]) -> int:
    root, issue_id = argv
    try:
        project = open_project(Path(root))
        with dispatch_lock(project.settings.lock_path):
            arguments = ["--root", root, "send", issue_id, "--send", "--yes", "--format", "json"]
            # standalone_mode=False: click returns the exit code instead of exiting, and
            # the library's errors are still turned into messages by NewsletterGroup.
            try:
                code = cli.main(arguments, prog_name="newsletter", standalone_mode=False)
            except SystemExit as done:  # ctx.exit(n) and the command's own SystemExit
                return int(done.code or 0)
            return int(code or 0)
    except LockHeldError as error:
        click.echo(f"newsletter: {error}", err=True)
        return EXIT_LOCK_HELD
    except NewsletterError as error:
        click.echo(f"newsletter: {error}", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
