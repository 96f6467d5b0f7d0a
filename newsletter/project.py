"""A project directory: settings, content, templates and recipients, loaded together.

The CLI works on a project directory (`--root DIR`, `NEWSLETTER_ROOT`, or the
current directory). `open_project` loads the settings once; `load_issue`
loads an issue with everything it is checked against, and refuses it (raising
`ContentError`) if anything is wrong, so broken content never reaches a
renderer or a transport.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from newsletter.audience import (
    AudienceSource,
    load_audience_source,
    read_audience_source,
)
from newsletter.content import (
    Catalogue,
    Issue,
    is_issue_file,
    load_catalogue,
    read_catalogue,
    read_issue,
)
from newsletter.errors import ContentError, NewsletterError
from newsletter.project_bounds import outside_problems, project_file
from newsletter.settings import Settings, load_settings

PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_project_dir() -> Path:
    """The sample project and default templates shipped with the package.

    In a wheel they live in `newsletter/_project/`; in a source checkout they
    are the checkout's own top-level project files.
    """
    installed = PACKAGE_DIR / "_project"
    return installed if installed.is_dir() else PACKAGE_DIR.parent


@dataclass(frozen=True)
class Project:
    root_dir: Path
    settings: Settings

    @property
    def issues_dir(self) -> Path:
        return self.root_dir / "issues"

    @property
    def catalogue_path(self) -> Path:
        return self.issues_dir / "publications.yaml"

    @property
    def recipients_dir(self) -> Path:
        return self.root_dir / "recipients"

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        """Where templates are looked up: the project's own first, then the defaults."""
        own = self.root_dir / "templates"
        default = bundled_project_dir() / "templates"
        return (own, default) if own.resolve() != default.resolve() else (own,)

    def issue_paths(self) -> list[Path]:
        return sorted(p for p in self.issues_dir.glob("*.y*ml") if is_issue_file(p))

    def resolve_issue_path(self, issue: str | Path) -> Path:
        """An issue given as a path, or as an id/file stem inside issues/."""
        path = Path(issue)
        # absolute(), not resolve(): an error about a link names the link itself.
        if path.exists():
            return path.absolute()
        # `--root DIR audience issues/x.yaml` from elsewhere: the path is the project's.
        if not path.is_absolute() and (self.root_dir / path).exists():
            return (self.root_dir / path).absolute()
        for candidate in (self.issues_dir / f"{issue}.yaml", self.issues_dir / f"{issue}.yml"):
            if candidate.exists():
                return candidate
        raise NewsletterError(f"{issue}: no such issue file (looked in {self.issues_dir})")

    def catalogue(self) -> Catalogue:
        return load_catalogue(project_file(self.catalogue_path, self.root_dir))

    def audience_source(self) -> AudienceSource:
        return load_audience_source(self.recipients_dir)

    def load_issue(self, issue: str | Path) -> Issue:
        """Load one issue, checked against the catalogue and the segments; raise on any error."""
        path = self.resolve_issue_path(issue)
        catalogue, catalogue_problems = read_catalogue(self.catalogue_path)
        source, source_problems = read_audience_source(self.recipients_dir)
        parsed, problems = read_issue(path, catalogue, source.segments.keys(), self.settings.zone)
        outside = outside_problems(self.root_dir, (path, self.catalogue_path))
        every = outside + catalogue_problems + source_problems + problems
        if parsed is None or any(p.is_error for p in every):
            raise ContentError(every)
        return parsed


def open_project(root_dir: Path, environ: Mapping[str, str] | None = None) -> Project:
    """Open a project directory, loading its settings (raising ContentError on problems)."""
    root_dir = root_dir.resolve()
    if not (root_dir / "newsletter.yaml").exists():
        raise NewsletterError(
            f"{root_dir} is not a newsletter project (no newsletter.yaml); "
            "run `newsletter init DIR` to create one, or pass --root"
        )
    return Project(root_dir, load_settings(root_dir, environ))


PROJECT_FILES = ("newsletter.yaml", "issues", "templates", "recipients")


def init_project(target_dir: Path) -> list[Path]:
    """Create a working project directory from the bundled sample; refuse to overwrite."""
    source = bundled_project_dir()
    target_dir = target_dir.resolve()
    if target_dir.exists() and not target_dir.is_dir():
        raise NewsletterError(f"{target_dir} is a file; choose an empty or new directory")
    # Anything already there (even a .gitignore, which init writes) could be
    # overwritten or mixed up with the sample; a fresh `git init` is fine.
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
    created = []
    for name in PROJECT_FILES:
        origin = source / name
        if origin.is_dir():
            shutil.copytree(origin, target_dir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, target_dir / name)
        created.append(target_dir / name)
    (target_dir / ".gitignore").write_text("var/\nout/\noutbox/\nsite/\n", encoding="utf-8")
    return created
