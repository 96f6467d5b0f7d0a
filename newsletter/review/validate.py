"""`newsletter validate`: every check on a project, every problem located.

Content checks (settings, catalogue, recipients, segments, issues) come first;
an issue whose content is sound is then rendered, variant by variant, and its
emails held to the size, safety and accessibility budget, so a problem that
would only show at send time shows here. The route messages would take is
named (`ProjectCheck.route`), with a warning for each thing it still needs: content
can be checked long before the secrets are set where it will be sent from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import TemplateError

from newsletter.audience.lists import check_list, read_audience_source
from newsletter.content.catalogue import read_catalogue
from newsletter.content.issue import Issue, read_issue
from newsletter.core.bounds import outside_problems
from newsletter.core.errors import NewsletterError, Problem
from newsletter.core.paths import ProjectPaths, is_issue_file
from newsletter.core.project import Project
from newsletter.core.settings import (
    DEFAULT_TIMEZONE,
    Settings,
    read_settings,
)
from newsletter.core.yamlfile import load_yaml
from newsletter.ledger.list_events import left_without_a_row
from newsletter.render.problems import render_error_problems
from newsletter.render.variants import Renderer, budget_problems, sample_variants
from newsletter.review.unsubscribe_secret import unsubscribe_secret_problems
from newsletter.transports.lookup import route_of, setup_problems


@dataclass(frozen=True)
class ProjectCheck:
    """What `check_project` found, and the route messages would take as the settings stand."""

    problems: list[Problem]
    route: str | None  # "route: GOV.UK Notify, ..."; None when the settings cannot be read


def validate_project(
    root_dir: Path,
    paths: Iterable[Path] = (),
    environ: Mapping[str, str] | None = None,
    *,
    render_emails: bool = True,
) -> list[Problem]:
    """Check settings, catalogue, recipients, segments, issues and their emails.

    With `paths`, only those issue files are checked (plus what they depend on).
    `render_emails=False` leaves out `email_problems` (rendering each variant and
    its budget), for a caller that renders the emails itself (the studio's preview).
    """
    return check_project(root_dir, paths, environ, render_emails=render_emails).problems


def check_project(
    root_dir: Path,
    paths: Iterable[Path] = (),
    environ: Mapping[str, str] | None = None,
    *,
    render_emails: bool = True,
) -> ProjectCheck:
    """`validate_project`'s problems, with the route named from the same reading of the settings."""
    project_paths = ProjectPaths(root_dir.resolve())
    problems: list[Problem] = []
    settings, settings_problems = read_settings(project_paths.root_dir, environ)
    problems += settings_problems
    if settings is not None:
        problems += unsubscribe_secret_problems(settings)
        problems += route_problems(settings)
        problems += transport_problems(settings)
    catalogue, catalogue_problems = read_catalogue(project_paths.catalogue_path)
    problems += outside_problems(project_paths.root_dir, [project_paths.catalogue_path])
    problems += catalogue_problems
    source, source_problems = read_audience_source(project_paths)
    problems += source_problems
    if settings is not None:
        problems += left_without_a_row(
            project_paths.suppressed_path, settings.ledger_path, settings.list_id
        )
    for list_path in source.list_paths():
        problems += check_list(list_path)
    if not source.list_paths():
        problems.append(
            Problem(project_paths.lists_dir, 1, 1, "there are no recipient lists (lists/*.csv)")
        )
    issue_files = [Path(p).absolute() for p in paths] or project_paths.issue_paths()
    zone = settings.zone if settings is not None else ZoneInfo(DEFAULT_TIMEZONE)
    sound_so_far = not any(p.is_error for p in problems) and settings is not None
    project = Project(project_paths.root_dir, settings) if settings is not None else None
    for issue_path in issue_files:
        if not is_issue_file(issue_path):
            continue
        issue, issue_problems = read_issue(issue_path, catalogue, source.segments.keys(), zone)
        issue_problems = outside_problems(project_paths.root_dir, [issue_path]) + issue_problems
        problems += issue_problems
        issue_sound = issue is not None and not any(p.is_error for p in issue_problems)
        if (
            render_emails
            and sound_so_far
            and project is not None
            and issue is not None
            and issue_sound
        ):
            problems += email_problems(project, issue)
    return ProjectCheck(problems, route_of(settings).describe() if settings is not None else None)


def email_problems(project: Project, issue: Issue) -> list[Problem]:
    """Render each variant of a sound issue and hold it to the email budget."""
    problems: list[Problem] = []
    try:
        renderer = Renderer(project, issue)
        for variant, recipient, _count in sample_variants(project, issue):
            html = renderer.personalise(variant, recipient).html
            problems += budget_problems(issue, variant, html)
    except (NewsletterError, TemplateError) as error:
        problems += render_error_problems(error, issue.path)
    return problems


def transport_problems(settings: Settings) -> list[Problem]:
    """Warnings for what the configured transport still needs (a placeholder host, no API key).

    Warnings, not errors: content can be checked and previewed long before
    anyone sets up the relay, and `send --send` refuses to start without it.
    """
    found = setup_problems(settings)
    if not found:
        return []
    doc = load_yaml(settings.settings_path)
    return [doc.problem(tuple(p.key.split(".")), p.message, "warning") for p in found]


def route_problems(settings: Settings) -> list[Problem]:
    """A warning, at `transport:`, naming what the route still needs before it can send."""
    route = route_of(settings)
    if not route.missing:
        return []
    doc = load_yaml(settings.settings_path)
    message = (
        f"sending through {route.name} needs {', '.join(route.missing)}; NEWSLETTER_* "
        "variables go in the environment file or where send and dispatch run (see docs/routes.md, "
        '"Choosing how to send")'
    )
    return [doc.problem(("transport",), message, "warning")]
