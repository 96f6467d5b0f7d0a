"""Shared pieces of the CLI: the context object, reusable options, output formats."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.csvcells import write_row
from newsletter.project import Project, open_project

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    """State shared by every command: where the project is, and how chatty to be."""

    root_dir: Path
    verbose: bool = False
    _project: Project | None = field(default=None, repr=False)

    @classmethod
    def create(cls, root_dir: str, verbose: bool) -> AppContext:
        return cls(Path(root_dir), verbose)

    def project(self) -> Project:
        """The project, opened (and its settings loaded) on first use."""
        if self._project is None:
            self._project = open_project(self.root_dir)
        return self._project


pass_app = click.make_pass_decorator(AppContext)


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
