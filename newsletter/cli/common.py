"""Shared pieces of the CLI: the context object, reusable options, output formats."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from newsletter.core.csvcells import write_row
from newsletter.core.errors import NewsletterError, Problem
from newsletter.core.paths import ProjectPaths, find_project_root, missing_project_message

if TYPE_CHECKING:
    from newsletter.core.project import Project

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=click.Command)


@dataclass
class AppContext:
    """State shared by every command: where the project is, and how chatty to be."""

    root_dir: Path
    verbose: bool = False
    # True when no folder was named and none at or above the current one is a project.
    not_found: bool = False
    _project: Project | None = field(default=None, repr=False)

    @classmethod
    def create(cls, root_dir: str | None, verbose: bool) -> AppContext:
        """The context for `--root` (or NEWSLETTER_ROOT); without either, the project
        holding the current directory, found by walking up as git does."""
        if root_dir is not None:
            return cls(Path(root_dir), verbose)
        here = Path.cwd()
        found = find_project_root(here)
        return cls(found or here, verbose, not_found=found is None)

    def project_dir(self) -> Path:
        """The project folder, refused in one line when it holds no newsletter.yaml."""
        if not ProjectPaths(self.root_dir).settings_path.is_file():
            raise NewsletterError(
                missing_project_message(self.root_dir.resolve(), searched=self.not_found)
            )
        return self.root_dir

    def project(self) -> Project:
        """The project, opened (and its settings loaded) on first use."""
        if self._project is None:
            from newsletter.core.project import open_project  # heavy; `--help` does without

            self._project = open_project(self.project_dir())
        return self._project


pass_app = click.make_pass_decorator(AppContext)

# What each command has not done when content errors stop it, for its last line.
_NOT_DONE: dict[click.Command, str] = {}
NOT_SENT = "nothing was sent"


def when_refused(not_done: str) -> Callable[[C], C]:
    """Declare what a command leaves undone when content errors stop it ("nothing was approved").

    A command that declares nothing is taken to be one that sends: "nothing was sent".
    """

    def declare(command: C) -> C:
        _NOT_DONE[command] = not_done
        return command

    return declare


def not_done_by(command: click.Command | None) -> str:
    return _NOT_DONE.get(command, NOT_SENT) if command is not None else NOT_SENT


def _shown_path(path: Path) -> str:
    """A path as the person typing commands would write it: relative to where they are."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def content_error_summary(problems: Sequence[Problem], outcome: str) -> str:
    """The last line after content errors: how many, where the first is, and what that means.

    e.g. "3 errors in the content, the first at issues/x.yaml:4:3; nothing was sent".
    """
    errors = [p for p in problems if p.is_error]
    if not errors:
        return f"the content has errors; {outcome}"
    first = errors[0]
    where = f"{_shown_path(first.path)}:{first.line}:{first.column}"
    if len(errors) == 1:
        return f"1 error in the content, at {where}; {outcome}"
    return f"{len(errors)} errors in the content, the first at {where}; {outcome}"


# Warnings of one kind seen this many times or more are shown as one line.
SUMMARISE_FROM = 2


def problem_lines(problems: Sequence[Problem], verbose: bool = False) -> list[tuple[Problem, str]]:
    """Each problem with the line to print for it; repeated warnings summarised unless `verbose`.

    A run of warnings of one kind (`Problem.kind`) becomes its first warning,
    located, plus how many more there are, so 22 catalogue entries without a
    URL do not bury the one error that matters.
    """
    counts: dict[str, int] = {}
    for problem in problems:
        if problem.kind is not None and not problem.is_error:
            counts[problem.kind] = counts.get(problem.kind, 0) + 1
    lines: list[tuple[Problem, str]] = []
    shown: set[str] = set()
    for problem in problems:
        kind = problem.kind
        if verbose or problem.is_error or kind is None or counts[kind] < SUMMARISE_FROM:
            lines.append((problem, str(problem)))
        elif kind not in shown:
            shown.add(kind)
            more = counts[kind] - 1
            lines.append(
                (
                    problem,
                    f"{problem} (and {more} more {kind}; --verbose lists each)",
                )
            )
    return lines


def echo_problems(problems: Sequence[Problem], verbose: bool, *, errors_only: bool = False) -> None:
    """Print problems: errors to stderr, warnings to stdout, repeats summarised unless `verbose`."""
    for problem, line in problem_lines(problems, verbose):
        if problem.is_error or not errors_only:
            click.echo(line, err=problem.is_error)


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    """`--format` with the given choices, for output a script may want to read."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output as a table for people, or JSON/CSV for scripts.",
    )


def issue_argument(function: F) -> F:
    return click.argument("issue", metavar="ISSUE")(function)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV for `--format csv`; cells that a spreadsheet would run as formulas are kept as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(write_row(header))
    writer.writerows(write_row(row) for row in rows)
    return buffer.getvalue()


def table_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
