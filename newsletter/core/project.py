"""A project directory: settings, content, templates and recipients, loaded together.

The CLI works on a project directory (`--root DIR`, `NEWSLETTER_ROOT`, or the
one holding the current directory). `open_project` loads the settings once; `load_issue`
loads an issue with everything it is checked against, and refuses it (raising
`ContentError`) if anything is wrong, so broken content never reaches a
renderer or a transport.

A `Project` lives for one command. The catalogue and the segments are read
the first time they are needed and kept, so a command that loads every issue
(archive, schedule, dispatch) reads them once. The suppression list is read
again each time an audience is wanted: a run adds hard bounces to it as it
goes, and the next issue in the same run must not mail them.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from newsletter.audience.lists import (
    AudienceSource,
    Segment,
    check_lists,
    read_project_segments,
)
from newsletter.audience.suppression import SuppressedAddress
from newsletter.content.catalogue import Catalogue, read_catalogue
from newsletter.content.issue import Issue, read_issue
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.bounds import outside_problems
from newsletter.core.checks import did_you_mean
from newsletter.core.errors import ContentError, NewsletterError, Problem
from newsletter.core.paths import (
    PACKAGE_DIR,
    ProjectPaths,
    bundled_project_dir,
    missing_project_message,
)
from newsletter.core.settings import Settings, load_settings
from newsletter.ledger.list_events import who_left

__all__ = [
    "PACKAGE_DIR",
    "Project",
    "ProjectPaths",
    "bundled_project_dir",
    "init_project",
    "open_project",
    "resolve_issue_path",
    "start_project_dir",
    "write_gitignore",
]


@dataclass(frozen=True)
class Project:
    root_dir: Path
    settings: Settings

    @cached_property
    def paths(self) -> ProjectPaths:
        return ProjectPaths(self.root_dir)

    # The project's own paths, as callers asked for them before `paths`
    # existed; new code asks `project.paths`.
    @property
    def issues_dir(self) -> Path:
        return self.paths.issues_dir

    @property
    def catalogue_path(self) -> Path:
        return self.paths.catalogue_path

    @property
    def recipients_dir(self) -> Path:
        return self.paths.recipients_dir

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        return self.paths.template_dirs

    def issue_paths(self) -> list[Path]:
        return self.paths.issue_paths()

    def resolve_issue_path(self, issue: str | Path) -> Path:
        """An issue given as a path, or as an id (its file name in issues/ without `.yaml`)."""
        return resolve_issue_path(self.paths, issue)

    @cached_property
    def _catalogue(self) -> tuple[Catalogue, list[Problem]]:
        catalogue, problems = read_catalogue(self.paths.catalogue_path)
        return catalogue, outside_problems(self.root_dir, [self.paths.catalogue_path]) + problems

    @cached_property
    def _segments(self) -> tuple[dict[str, Segment], list[Problem]]:
        return read_project_segments(self.paths)

    @cached_property
    def _audience_problems(self) -> list[Problem]:
        """What is wrong with suppressed.csv and the lists as the command found them.

        Checked once per command for `load_issue`; the audience stream checks
        the lists again as it reads them, so a change meanwhile is still caught.
        """
        return self._outside_recipients_problems() + self._who_left()[1] + check_lists(self.paths)

    def _who_left(self) -> tuple[dict[str, SuppressedAddress], list[Problem]]:
        """suppressed.csv and the standing list events: everyone who must not be mailed."""
        settings = self.settings
        return who_left(self.paths.suppressed_path, settings.ledger_path, settings.list_id)

    def _outside_recipients_problems(self) -> list[Problem]:
        """recipients/ files linked in from outside the project are refused, named."""
        paths = self.paths
        read = [paths.segments_path, paths.suppressed_path, *paths.list_paths()]
        return outside_problems(self.root_dir, read)

    def catalogue(self) -> Catalogue:
        catalogue, problems = self._catalogue
        _refuse(problems)
        return catalogue

    def audience_source(self) -> AudienceSource:
        """The segments (read once) and the suppressions as they are now.

        Refuses (ContentError) when segments.yaml or suppressed.csv has an
        error, listing the lists' problems too, so one refusal shows all of
        them; the lists themselves are checked by the stream that reads them.
        """
        segments, segment_problems = self._segments
        suppressed, suppressed_problems = self._who_left()
        problems = self._outside_recipients_problems() + segment_problems + suppressed_problems
        if any(p.is_error for p in problems):
            raise ContentError(problems + check_lists(self.paths))
        return AudienceSource(self.paths, segments, suppressed)

    def load_issue(self, issue: str | Path) -> Issue:
        """Load one issue, checked against the catalogue and the segments; raise on any error.

        A broken recipient list or suppression list refuses every issue too, as
        it would stop the send: the audience is content.
        """
        path = self.resolve_issue_path(issue)
        catalogue, catalogue_problems = self._catalogue
        segments, segment_problems = self._segments
        parsed, problems = read_issue(path, catalogue, segments.keys(), self.settings.zone)
        outside = outside_problems(self.root_dir, [path])
        every = outside + catalogue_problems + segment_problems + self._audience_problems + problems
        if parsed is None:
            raise ContentError(every)
        _refuse(every)
        return parsed


def resolve_issue_path(paths: ProjectPaths, issue: str | Path) -> Path:
    """The issue file meant by `issue`: a path, or an id; NewsletterError with a hint if none.

    A relative path is tried from the current directory, then from the
    project directory (`--root DIR audience issues/x.yaml` from elsewhere).
    """
    path = Path(issue)
    # absolute(), not resolve(): an error about a link names the link itself.
    if path.exists():
        return path.absolute()
    if not path.is_absolute() and (paths.root_dir / path).exists():
        return (paths.root_dir / path).absolute()
    issues_dir = paths.issues_dir
    for candidate in (issues_dir / f"{issue}.yaml", issues_dir / f"{issue}.yml"):
        if candidate.exists():
            return candidate
    known = [p.stem for p in paths.issue_paths()]
    if path.suffix in {".yaml", ".yml"} or len(path.parts) > 1:
        hint = did_you_mean(path.stem, known)
        raise NewsletterError(f"{issue}: no such issue file{hint}")
    hint = did_you_mean(str(issue), known) or (
        f"; the issues are: {', '.join(known)}" if 0 < len(known) <= 5 else ""
    )
    raise NewsletterError(f"no issue `{issue}` (there is no {issues_dir / issue}.yaml){hint}")


def _refuse(problems: list[Problem]) -> None:
    if any(p.is_error for p in problems):
        raise ContentError(problems)


def open_project(root_dir: Path, environ: Mapping[str, str] | None = None) -> Project:
    """Open a project directory, loading its settings (raising ContentError on problems)."""
    root_dir = root_dir.resolve()
    if not ProjectPaths(root_dir).settings_path.exists():
        raise NewsletterError(missing_project_message(root_dir, searched=False))
    return Project(root_dir, load_settings(root_dir, environ))


def start_project_dir(target_dir: Path) -> Path:
    """The (resolved) folder for a new project, created; refused if it holds anything.

    Anything already there (even a .gitignore, which init writes) could be
    overwritten or mixed up with the new project; a fresh `git init` is fine.
    """
    target_dir = target_dir.resolve()
    if target_dir.exists() and not target_dir.is_dir():
        raise NewsletterError(f"{target_dir} is a file; choose an empty or new directory")
    present = (
        sorted(p.name for p in target_dir.iterdir() if p.name != ".git")
        if target_dir.exists()
        else []
    )
    if present:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise NewsletterError(
            f"{target_dir} is not empty (it has {shown}); choose an empty or new directory"
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    return target_dir


def write_gitignore(target_dir: Path) -> Path:
    """A .gitignore keeping what the pipeline writes (ledger, outbox, out/, site/) out of git."""
    target = ProjectPaths(target_dir)
    ignored = "".join(f"{path.relative_to(target_dir)}/\n" for path in target.generated)
    return write_text_atomic(target_dir / ".gitignore", ignored)


def init_project(target_dir: Path) -> list[Path]:
    """Create the sample project (the May 2023 issue, approved) in a new folder; refuse to overwrite.

    It is the walk-through's project and the tests' fixture; a team starting
    its own newsletter wants `content.new_project.init_team_project`.
    """
    source = bundled_project_dir()
    target_dir = start_project_dir(target_dir)
    target = ProjectPaths(target_dir)
    created = []
    for origin, copy in zip(ProjectPaths(source).sources, target.sources, strict=True):
        if origin.is_dir():
            shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, copy)
        created.append(copy)
    write_gitignore(target_dir)
    return created
