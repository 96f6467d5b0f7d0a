"""`newsletter import`: start an issue from the briefing paper the team already writes.

The paper (Word .docx, Markdown .md, or the plain-text .txt the team exports)
is read into neutral blocks by a reader per format, its structure recognised
(title, date, publications table, one section per report), its table matched
against the catalogue, and the issue written as a draft: issues/ID.yaml with
no `send_at` and no approval, plus any new catalogue entries. Nothing is
written unless the result passes the same checks as `newsletter validate`,
and an existing issue is never overwritten. Whatever the paper holds that the
structure has no place for stays where it stood, listed in `warnings`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import yaml

from newsletter.content.catalogue import Publication, read_catalogue
from newsletter.content.importing.blocks import BriefingWarning, Source
from newsletter.content.importing.briefing import Briefing
from newsletter.content.importing.catalogue import catalogue_with, match_rows
from newsletter.content.importing.issue_yaml import IssueDefaults, draft_issue
from newsletter.content.importing.read_docx import read_docx
from newsletter.content.importing.read_markdown import read_markdown
from newsletter.content.importing.read_text import read_plain_text
from newsletter.content.importing.recognise import recognise
from newsletter.content.importing.text import slug
from newsletter.content.issue import read_issue
from newsletter.content.new_issue import check_issue_id, refuse_taken_id
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.errors import BriefingError, ContentError
from newsletter.core.project import Project
from newsletter.core.yamlfile import load_yaml

__all__ = ["BriefingWarning", "ImportResult", "import_briefing"]

READERS: dict[str, Callable[[Path], Source]] = {
    ".docx": read_docx,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".txt": read_plain_text,
}


@dataclass(frozen=True)
class ImportResult:
    issue_id: str
    issue_path: Path
    issue_yaml: str
    catalogue_added: tuple[Publication, ...]  # new entries of issues/publications.yaml
    catalogue_matched: tuple[Publication, ...]  # the table's rows already in the catalogue
    warnings: tuple[BriefingWarning, ...]
    written: bool  # False for a dry run


def import_briefing(
    project: Project,
    source: Path,
    *,
    issue_id: str | None = None,
    from_issue: str | None = None,
    dry_run: bool = False,
    today: date | None = None,
) -> ImportResult:
    """Import the briefing at `source` as a draft issue; BriefingError, nothing written, if it cannot be.

    `from_issue` names the issue whose audience and reply-to the draft takes
    (by default the most recent one). `today` is the date used only when the
    paper gives none.
    """
    briefing = _recognised(source)
    catalogue, problems = read_catalogue(project.catalogue_path)
    if any(p.is_error for p in problems):
        raise ContentError(problems)
    match = match_rows(briefing.rows, catalogue)
    warnings = list(match.warnings)
    issue_date = briefing.issue_date
    if issue_date is None:
        issue_date = today or datetime.now(project.settings.zone).date()
        warnings.append(
            BriefingWarning("the start", f"no date line under the title; dated {issue_date}")
        )
    new_id = check_issue_id(issue_id or default_issue_id(briefing, issue_date))
    refuse_taken_id(project, new_id)
    defaults = issue_defaults(project, from_issue)
    draft = draft_issue(
        briefing,
        match.everything(catalogue),
        new_id,
        issue_date,
        defaults,
        source.name,
        tuple(warnings),
    )
    catalogue_text = (
        catalogue_with(project.catalogue_path, match.added, source.name) if match.added else None
    )
    _check_draft(project, new_id, draft.text, catalogue_text)
    path = project.issues_dir / f"{new_id}.yaml"
    if not dry_run:
        if catalogue_text is not None:
            write_text_atomic(project.catalogue_path, catalogue_text)
        write_text_atomic(path, draft.text, overwrite=False)
    return ImportResult(
        issue_id=new_id,
        issue_path=path,
        issue_yaml=draft.text,
        catalogue_added=match.added,
        catalogue_matched=match.matched,
        warnings=draft.warnings,
        written=not dry_run,
    )


def _recognised(source: Path) -> Briefing:
    reader = READERS.get(source.suffix.lower())
    if reader is None:
        kinds = "a Word .docx, a Markdown .md or a plain-text .txt file"
        raise BriefingError(f"{source}: cannot import this kind of file; import {kinds}")
    if not source.is_file():
        raise BriefingError(f"{source}: there is no such file")
    try:
        return recognise(reader(source).blocks)
    except BriefingError as error:
        message = str(error)
        raise BriefingError(
            message if message.startswith(str(source)) else f"{source}: {message}"
        ) from None


def default_issue_id(briefing: Briefing, issue_date: date) -> str:
    """The month and the title's first words, e.g. 2023-05-reports-from-the-child-safeguarding."""
    return f"{issue_date:%Y-%m}-{slug(briefing.title) or 'briefing'}".strip("-")


def issue_defaults(project: Project, from_issue: str | None) -> IssueDefaults:
    """The audience and reply-to of `from_issue`, or of the most recent issue, or the settings'."""
    path = project.resolve_issue_path(from_issue) if from_issue else latest_issue(project)
    data = load_yaml(path).data if path is not None else None
    if (
        path is not None
        and isinstance(data, dict)
        and data.get("audience")
        and data.get("reply_to")
    ):
        audience = data["audience"]
        names = tuple(str(a) for a in (audience if isinstance(audience, list) else [audience]))
        return IssueDefaults(names, str(data["reply_to"]), f"copied from {path.name}")
    segments = list(project.audience_source().segments)
    first = (
        "all-practitioners" if "all-practitioners" in segments else (segments or ["everyone"])[0]
    )
    return IssueDefaults((first,), project.settings.reply_to, "the settings' defaults")


def latest_issue(project: Project) -> Path | None:
    """The issue with the latest `date` (the file name breaks ties), if any has one.

    Only each file's top-level `date:` is read, from the YAML node tree (which
    never expands aliases), with libyaml when present: a project holds years
    of issues, and parsing each in full would make every import slow.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dated = []
    for candidate in project.issue_paths():
        try:
            root = yaml.compose(candidate.read_text(encoding="utf-8"), Loader=loader)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue  # `validate` reports it; it cannot be the one to copy from
        if not isinstance(root, yaml.MappingNode):
            continue
        for key, value in root.value:
            if key.value == "date" and isinstance(value, yaml.ScalarNode):
                with contextlib.suppress(ValueError):
                    dated.append((date.fromisoformat(str(value.value)), candidate.name, candidate))
    return max(dated)[2] if dated else None


def _check_draft(project: Project, issue_id: str, text: str, catalogue_text: str | None) -> None:
    """Read the draft back as `validate` would; refuse to write what would not pass."""
    with tempfile.TemporaryDirectory(prefix="newsletter-import-") as folder:
        issue_path = Path(folder) / f"{issue_id}.yaml"
        issue_path.write_text(text, encoding="utf-8")
        catalogue_path = project.catalogue_path
        if catalogue_text is not None:
            catalogue_path = Path(folder) / "publications.yaml"
            catalogue_path.write_text(catalogue_text, encoding="utf-8")
        catalogue, problems = read_catalogue(catalogue_path)
        segments = project.audience_source().segments.keys()
        _, issue_problems = read_issue(issue_path, catalogue, segments, project.settings.zone)
        errors = [p for p in [*problems, *issue_problems] if p.is_error]
        if errors:
            details = "; ".join(p.message for p in errors[:3])
            raise BriefingError(
                f"the issue made from the paper would not pass `newsletter validate` ({details}); "
                "nothing was written"
            )
