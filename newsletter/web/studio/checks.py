"""Check and preview an edited issue before it is saved: `validate`'s problems, next to their fields.

The unsaved text is written to var/studio/drafts/ID.yaml (inside the project,
so the usual checks, including the one refusing files from outside the
project, apply unchanged), checked by `review.validate.validate_project` and
rendered by `web.preview.build_state`, exactly as `validate` and `preview`
would do once it is saved (the emails rendered once, for the preview and the
budget check both). Each problem in the issue is mapped from its
line to the form field that holds that line.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.errors import ContentError, Problem
from newsletter.core.project import Project
from newsletter.render.variants import budget_problems
from newsletter.review.validate import validate_project
from newsletter.web.preview import PreviewState, build_state, fingerprint
from newsletter.web.studio.fieldmap import FieldLine, field_at, field_lines
from newsletter.web.studio.roundtrip import load_document

DRAFTS_DIR = "var/studio/drafts"
KEPT_RENDERS = 40  # previews the iframes may still ask for


@dataclass(frozen=True)
class FieldProblem:
    """A problem as the form shows it: the field it belongs to (if any) and where it is."""

    field: str | None
    message: str
    where: str  # file:line:column, relative to the project
    is_error: bool


@dataclass(frozen=True)
class CheckResult:
    problems: tuple[FieldProblem, ...]
    state: PreviewState | None  # None when the issue cannot be rendered yet
    render_id: str

    @property
    def errors(self) -> tuple[FieldProblem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    def for_field(self, name: str) -> str | None:
        """The first error message for `name`, for the message above its input."""
        return next((p.message for p in self.errors if p.field == name), None)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def located(
    problems: Sequence[Problem],
    draft: Path,
    shown_as: Path,
    lines: Sequence[FieldLine],
    root: Path,
) -> tuple[FieldProblem, ...]:
    """Each problem with its field: those in the draft are reported as lines of the issue file."""
    found = []
    for problem in problems:
        in_issue = problem.path.resolve() == draft.resolve()
        path = shown_as if in_issue else problem.path
        where = f"{_relative(path, root)}:{problem.line}:{problem.column}"
        name = field_at(lines, problem.line) if in_issue else None
        found.append(FieldProblem(name, problem.message, where, problem.is_error))
    return tuple(found)


def email_budget_problems(state: PreviewState) -> list[Problem]:
    """`validate`'s budget check of each variant, on the emails the preview rendered."""
    issue = state.issue
    if issue is None:
        return []
    found: list[Problem] = []
    for item in state.variants:
        found += budget_problems(issue, item.variant, item.email.html)
    return found


class DraftChecker:
    """Checks drafts and keeps the latest renders for the preview frames to fetch."""

    def __init__(self, project_root: Path) -> None:
        self.root = project_root
        self._renders: OrderedDict[str, PreviewState] = OrderedDict()
        self._last: tuple[str, CheckResult] | None = None  # a page reload re-checks nothing
        self._lock = threading.Lock()

    def draft_path(self, issue_id: str) -> Path:
        return self.root / DRAFTS_DIR / f"{issue_id}.yaml"

    def check(self, project: Project, issue_path: Path, text: str) -> CheckResult:
        """`validate` and the preview for `text` as the issue file's content.

        The same problems as `validate_project` for the saved file: the checks
        of the issue and project, then the emails, rendered once for both the
        preview and the budget check (validate renders them itself otherwise).
        """
        draft = self.draft_path(issue_path.stem)
        lines = field_lines(text)
        if not lines:  # not YAML (or not a mapping): say where, as the round-trip parser sees it
            try:
                load_document(text, draft)
            except ContentError as error:
                unread = located(error.problems, draft, issue_path, [], self.root)
                return CheckResult(unread, None, "")
        key = f"{fingerprint(project, issue_path)}:{hashlib.sha256(text.encode()).hexdigest()}"
        with self._lock:
            if self._last is not None and self._last[0] == key:
                return self._last[1]
        write_text_atomic(draft, text)
        try:
            problems = validate_project(self.root, [draft], render_emails=False)
        except ValueError as error:  # PyYAML's own date parsing fails on e.g. 2023-13-45
            problems = [Problem(draft, 1, 1, f"a value cannot be read: {error}")]
        ours = [p for p in problems if p.path.resolve() == draft.resolve() or p.is_error]
        state = None
        if not any(p.is_error for p in problems):
            state = build_state(project, draft, key[-16:])
            ours += [*state.problems, *email_budget_problems(state)]
        render_id = self._keep(state) if state is not None and not state.problems else ""
        result = CheckResult(located(ours, draft, issue_path, lines, self.root), state, render_id)
        with self._lock:
            self._last = (key, result)
        return result

    def _keep(self, state: PreviewState) -> str:
        render_id = hashlib.sha256(f"{state.version}{id(state)}".encode()).hexdigest()[:20]
        with self._lock:
            self._renders[render_id] = state
            while len(self._renders) > KEPT_RENDERS:
                self._renders.popitem(last=False)
        return render_id

    def render(self, render_id: str) -> PreviewState | None:
        with self._lock:
            return self._renders.get(render_id)
