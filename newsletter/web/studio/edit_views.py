"""The pages for writing: the list of issues, the edit form, its live check, a new issue.

Saving writes the issue file the command line reads, through `roundtrip.py`
(comments and layout kept) and `write_text_atomic`. A save refuses to
overwrite a change made on disk since the page was loaded: the form carries
the hash of the file it was made from, and a different hash on disk shows
both versions instead of writing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from newsletter.audience.lists import AudienceCounts, iter_audience
from newsletter.content.catalogue import PUBLICATION_TYPES
from newsletter.content.issue import Issue
from newsletter.content.new_issue import new_issue
from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.errors import ContentError, NewsletterError
from newsletter.core.project import Project
from newsletter.schedule.due import ScheduleEntry, issue_schedule
from newsletter.web.studio.catalogue_form import CatalogueEntry, save_catalogue_entry
from newsletter.web.studio.checks import CheckResult
from newsletter.web.studio.issue_form import IssueForm, LinkForm, SectionForm, form_from_post
from newsletter.web.studio.pages import EMAIL_POLICY, common_headers, json_response, redirect
from newsletter.web.studio.roundtrip import edited_text, read_form

if TYPE_CHECKING:
    from newsletter.web.studio.app import Studio

NEXT_STEPS = {
    "draft": ("Edit", ""),
    "waiting": ("Check the schedule", ""),
    "due": ("Send now", "/send"),
    "unapproved": ("Approve", "/approve"),
    "invalid": ("Fix the errors", ""),
    "overdue": ("Decide whether to send", "/send"),
    "sending": ("Watch the progress", "/progress"),
    "sent": ("See the report", "/report"),
    "failed": ("See the report", "/report"),
}


def file_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def next_step(entry: ScheduleEntry) -> tuple[str, str]:
    """What to do next with an issue, as a button label and the page it leads to."""
    label, page = NEXT_STEPS.get(entry.state, ("Edit", ""))
    if entry.state == "draft" and entry.approved:
        label, page = "Send now or schedule", "/send"
    elif entry.state == "draft" and not any(p.is_error for p in entry.problems):
        label, page = "Check and approve", "/approve"
    return label, f"/issues/{entry.issue_id}{page}"


def home(studio: Studio, request: Request) -> Response:
    project = studio.project()
    now = datetime.now(project.settings.zone)
    entries = issue_schedule(project, now)
    rows = [
        (entry, entry.approval_text(project.settings.zone), next_step(entry)) for entry in entries
    ]
    running = {entry.issue_id for entry in entries if studio.jobs.running(entry.issue_id)}
    return studio.pages.page("home.html.j2", rows=rows, running=running, zone=project.settings.zone)


# --- the edit form ----------------------------------------------------------------


def segment_reach(project: Project, issue: Issue | None) -> dict[str, int]:
    """How many people (not suppressed) each segment reaches, from the recipient lists."""
    if issue is None:
        return {}
    source = project.audience_source()
    everyone = dataclasses.replace(issue, audience=tuple(source.segments), sections=())
    counts: dict[str, int] = dict.fromkeys(source.segments, 0)
    try:
        tally = AudienceCounts()
        for _ in iter_audience(source, everyone, tally):
            pass
    except ContentError:
        return {}
    counts.update(tally.per_segment)
    return counts


def _loaded_issue(project: Project, path: Path) -> Issue | None:
    try:
        return project.load_issue(path)
    except ContentError:
        return None


def _edit_page(
    studio: Studio,
    issue_id: str,
    form: IssueForm,
    base_hash: str,
    check: CheckResult,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    project = studio.project()
    path = studio.issue_path(project, issue_id)
    segments = project.audience_source().segments
    extra = {"saved": False, "conflict": None, **extra}
    return studio.pages.page(
        "edit.html.j2",
        status,
        issue_id=issue_id,
        file_name=path.relative_to(project.root_dir).as_posix(),
        form=form,
        base_hash=base_hash,
        check=check,
        segments=segments,
        reach=segment_reach(project, _loaded_issue(project, path)),
        publications=project.catalogue().publications if _catalogue_ok(project) else (),
        zone=project.settings.zone.key,
        **extra,
    )


def _catalogue_ok(project: Project) -> bool:
    try:
        project.catalogue()
    except ContentError:
        return False
    return True


def edit(studio: Studio, request: Request, issue_id: str) -> Response:
    project = studio.project()
    path = studio.issue_path(project, issue_id)
    disk_text = path.read_text(encoding="utf-8")
    if request.method == "GET":
        form = read_form(disk_text, project.settings.zone, path.relative_to(project.root_dir))
        check = studio.checker.check(project, path, disk_text)
        saved = request.args.get("saved") == "1"
        return _edit_page(studio, issue_id, form, file_hash(disk_text), check, saved=saved)
    form = form_from_post(request.form)
    action = request.form.get("action", "save")
    base_hash = request.form.get("base_hash", "")
    if action != "save":
        form = changed_structure(form, action)
        text = edited_text(disk_text, form, project.settings.zone)
        check = studio.checker.check(project, path, text)
        return _edit_page(studio, issue_id, form, base_hash, check)
    if base_hash != file_hash(disk_text):
        mine = edited_text(disk_text, form, project.settings.zone)
        check = studio.checker.check(project, path, mine)
        return _edit_page(
            studio,
            issue_id,
            form,
            file_hash(disk_text),
            check,
            status=409,
            conflict={"disk": disk_text, "mine": mine},
        )
    write_text_atomic(path, edited_text(disk_text, form, project.settings.zone))
    return redirect(f"/issues/{issue_id}?saved=1")


def check(studio: Studio, request: Request, issue_id: str) -> Response:
    """The live check (JavaScript): errors by field, and the preview, for the unsaved form."""
    project = studio.project()
    path = studio.issue_path(project, issue_id)
    form = form_from_post(request.form)
    text = edited_text(path.read_text(encoding="utf-8"), form, project.settings.zone)
    result = studio.checker.check(project, path, text)
    return json_response(
        {
            "errors": [
                {"field": p.field, "message": p.message}
                for p in result.errors
                if p.field is not None
            ],
            "summary": studio.pages.html("_error_summary.html.j2", check=result),
            "preview": studio.pages.html("_preview.html.j2", check=result),
        }
    )


def _swap(items: list[Any], first: int, second: int) -> None:
    if 0 <= first < len(items) and 0 <= second < len(items):
        items[first], items[second] = items[second], items[first]


def changed_structure(form: IssueForm, action: str) -> IssueForm:
    """The form after a button that adds, removes or moves a section or adds a link."""
    sections = list(form.sections)
    verb, _, number = action.partition(":")
    index = int(number) if number.isdigit() else -1
    if verb == "add-section":
        sections.append(SectionForm(prompts_heading="For information and consideration"))
    elif verb == "remove-section" and 0 <= index < len(sections):
        del sections[index]
    elif verb == "move-up":
        _swap(sections, index, index - 1)
    elif verb == "move-down":
        _swap(sections, index, index + 1)
    elif verb == "add-link" and 0 <= index < len(sections):
        section = sections[index]
        sections[index] = dataclasses.replace(section, links=(*section.links, LinkForm()))
    return dataclasses.replace(form, sections=tuple(sections))


def email_frame(studio: Studio, request: Request, render_id: str, variant: str) -> Response:
    """One rendered email of a live preview, for its sandboxed frame."""
    state = studio.checker.render(render_id)
    found = state.find(variant) if state is not None else None
    if found is None:
        raise NotFound()
    kind = request.args.get("part", "html")
    if kind == "text":
        return Response(
            found.email.text,
            content_type="text/plain; charset=utf-8",
            headers=common_headers(EMAIL_POLICY),
        )
    return Response(
        found.email.html,
        content_type="text/html; charset=utf-8",
        headers=common_headers(EMAIL_POLICY),
    )


# --- a new issue, a catalogue entry ---------------------------------------------------


def new_issue_page(studio: Studio, request: Request) -> Response:
    project = studio.project()
    issues = [path.stem for path in project.issue_paths()]
    values = {"new_id": "", "from_issue": issues[-1] if issues else ""}
    error = None
    if request.method == "POST":
        values = {
            "new_id": request.form.get("new_id", "").strip(),
            "from_issue": request.form.get("from_issue", ""),
        }
        earlier = values["from_issue"] if values["from_issue"] in issues else None
        try:
            path = new_issue(project, values["new_id"], earlier)
        except NewsletterError as problem:
            error = str(problem)
        else:
            return redirect(f"/issues/{path.stem}")
    return studio.pages.page(
        "new.html.j2", 400 if error else 200, issues=issues, values=values, error=error
    )


def _return_to(value: str) -> str:
    """Only a page of the studio itself (never another site) to go back to."""
    if value.startswith("/issues/") and "//" not in value and "\\" not in value:
        return value
    return "/"


def catalogue_entry(studio: Studio, request: Request) -> Response:
    project = studio.project()
    back = _return_to(request.values.get("return", "/"))
    entry = CatalogueEntry.from_values(request.values)
    errors: list[str] = []
    if request.method == "POST":
        try:
            save_catalogue_entry(project, entry)
        except ContentError as error:
            errors = [p.message for p in error.problems if p.is_error]
        except NewsletterError as error:
            errors = [str(error)]
        else:
            return redirect(back)
    elif entry.id:
        entry = CatalogueEntry.existing(project, entry.id) or entry
    return studio.pages.page(
        "catalogue.html.j2",
        400 if errors else 200,
        entry=entry,
        errors=errors,
        back=back,
        types=PUBLICATION_TYPES,
        publications=project.catalogue().publications if _catalogue_ok(project) else (),
    )
