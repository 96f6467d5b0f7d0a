"""Files of a project must be inside it: a link leading out of the project is an error.

An issue file linked into `issues/` from somewhere else was once sent to 67
people and published, because every reader followed the link without a
second look. Readers of project files (issues, the catalogue, recipient
lists, segments, suppressions, templates) ask here first. A link inside the
project to another place inside it is fine; what counts is where the file
finally resolves, so a linked folder (`recipients -> /elsewhere`) is caught
as well as a linked file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from newsletter.core.errors import ContentError, Problem


def outside_problem(path: Path, root_dir: Path) -> Problem | None:
    """A located problem if `path` resolves outside `root_dir`, naming where it leads."""
    root = root_dir.resolve()
    target = path.resolve()
    if target.is_relative_to(root):
        return None
    where = "is" if target == path.absolute() else f"leads to {target}, which is"
    return Problem(
        path,
        1,
        1,
        f"this file {where} outside the project {root}; files from elsewhere are not "
        "sent or published: copy the file into the project instead of linking to it",
    )


def outside_problems(root_dir: Path, paths: Iterable[Path]) -> list[Problem]:
    """The problems of every path in `paths` that resolves outside `root_dir`."""
    return [p for p in (outside_problem(path, root_dir) for path in paths) if p is not None]


def project_file(path: Path, root_dir: Path) -> Path:
    """`path`, if it resolves inside `root_dir`; otherwise raise ContentError naming both."""
    problem = outside_problem(path, root_dir)
    if problem is not None:
        raise ContentError([problem])
    return path
