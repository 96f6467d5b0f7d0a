"""Where everything lives in a project directory, worked out from the directory alone.

One place names the files, so no module puts `"recipients" / "suppressed.csv"`
together again. `newsletter.yaml` (or the environment) may move the four files
a run writes (ledger, outbox, lock, dispatch log): the paths here are their
defaults, and `Settings` holds where they are.

This module imports nothing from the package, so settings and audience can use
it without importing `project` (which imports them).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CATALOGUE_NAMES = ("publications.yaml", "publications.yml")


def user_cache_dir() -> Path | None:
    """`$XDG_CACHE_HOME/newsletter`, else `~/.cache/newsletter`; None with no home folder.

    Work kept between commands (`core/cachefile`) lives there rather than in
    the project: `var/` holds the ledger, which a dry run or a test copy must
    not bring into being, and a checkout may be read-only.
    """
    named = os.environ.get("XDG_CACHE_HOME", "")
    if named and Path(named).is_absolute():
        return Path(named) / "newsletter"
    try:
        return Path.home() / ".cache" / "newsletter"
    except RuntimeError:  # no HOME and no entry in the password database
        return None


def bundled_project_dir() -> Path:
    """The sample project and default templates shipped with the package.

    In a wheel they live in `newsletter/_project/`; in a source checkout they
    are the checkout's own top-level project files.
    """
    installed = PACKAGE_DIR / "_project"
    return installed if installed.is_dir() else PACKAGE_DIR.parent


def find_project_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` holding newsletter.yaml, as git finds `.git`."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if ProjectPaths(directory).settings_path.is_file():
            return directory
    return None


def is_issue_file(path: Path) -> bool:
    """Issue files are the YAML files in issues/ other than the catalogue."""
    return path.suffix in {".yaml", ".yml"} and path.name not in CATALOGUE_NAMES


@dataclass(frozen=True)
class ProjectPaths:
    """The files and folders of the project at `root_dir`."""

    root_dir: Path

    # --- what the team writes: `init` copies these from the sample ---------

    @property
    def settings_path(self) -> Path:
        return self.root_dir / "newsletter.yaml"

    @property
    def issues_dir(self) -> Path:
        return self.root_dir / "issues"

    @property
    def catalogue_path(self) -> Path:
        return self.issues_dir / CATALOGUE_NAMES[0]

    @property
    def templates_dir(self) -> Path:
        return self.root_dir / "templates"

    @property
    def recipients_dir(self) -> Path:
        return self.root_dir / "recipients"

    @property
    def lists_dir(self) -> Path:
        return self.recipients_dir / "lists"

    @property
    def segments_path(self) -> Path:
        return self.recipients_dir / "segments.yaml"

    @property
    def suppressed_path(self) -> Path:
        return self.recipients_dir / "suppressed.csv"

    @property
    def approvals_dir(self) -> Path:
        """Who approved each issue, and a fingerprint of what they approved (`approval.py`)."""
        return self.root_dir / "approvals"

    @property
    def sources(self) -> tuple[Path, ...]:
        """What makes a project: the settings, issues, templates, recipients and approvals."""
        return (
            self.settings_path,
            self.issues_dir,
            self.templates_dir,
            self.recipients_dir,
            self.approvals_dir,
        )

    # --- what the pipeline writes (git-ignored) -----------------------------

    @property
    def var_dir(self) -> Path:
        return self.root_dir / "var"

    @property
    def ledger_path(self) -> Path:
        return self.var_dir / "ledger.sqlite3"

    @property
    def lock_path(self) -> Path:
        return self.var_dir / "dispatch.lock"

    @property
    def dispatch_log_path(self) -> Path:
        return self.var_dir / "dispatch.log"

    @property
    def cache_dir(self) -> Path | None:
        """This project's work kept between commands, in the user's cache; safe to delete."""
        base = user_cache_dir()
        if base is None:
            return None
        tag = hashlib.sha256(str(self.root_dir).encode("utf-8")).hexdigest()[:16]
        return base / f"{self.root_dir.name}-{tag}"

    @property
    def outbox_dir(self) -> Path:
        return self.root_dir / "outbox"

    @property
    def out_dir(self) -> Path:
        """Where `render` writes an issue's files, one folder per issue."""
        return self.root_dir / "out"

    @property
    def site_dir(self) -> Path:
        """Where `archive` builds the static site."""
        return self.root_dir / "site"

    @property
    def generated(self) -> tuple[Path, ...]:
        return (self.var_dir, self.out_dir, self.outbox_dir, self.site_dir)

    # --- listings ------------------------------------------------------------

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        """Where templates are looked up: the project's own first, then the defaults."""
        own = self.templates_dir
        default = ProjectPaths(bundled_project_dir()).templates_dir
        return (own, default) if own.resolve() != default.resolve() else (own,)

    def issue_paths(self) -> list[Path]:
        return sorted(p for p in self.issues_dir.glob("*.y*ml") if is_issue_file(p))

    def list_paths(self) -> list[Path]:
        """The recipient lists, in name order (the order people are met in)."""
        return sorted(self.lists_dir.glob("*.csv"))


def missing_project_message(directory: Path, *, searched: bool) -> str:
    """One line for a command run where there is no project, saying how to point at one.

    `searched`: no folder was named, so `directory` and every folder above it were tried.
    """
    if searched:
        return (
            f"no newsletter.yaml was found in {directory} or any folder above it: "
            "cd into your project folder (the one holding newsletter.yaml), or name it with "
            "--root DIR (or NEWSLETTER_ROOT=DIR); to start a project, run `newsletter init DIR`"
        )
    return (
        f"{directory} is not a newsletter project (it has no newsletter.yaml): check the folder "
        "given with --root or NEWSLETTER_ROOT; to start a project there, run "
        "`newsletter init DIR`"
    )
