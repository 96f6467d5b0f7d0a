"""The pages for sending: a test copy, approving, sending now or scheduling, and the progress.

Each calls what the command line calls: `delivery.proofs` (as `send
--test-to`), `review.approval.approve_issue` (as `approve`), and for the
real send the command `newsletter send ID --send --yes` itself, in a
background process under the dispatch lock (`jobs.py`), after the same
approval check the command makes.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from newsletter.core.atomicfile import write_text_atomic
from newsletter.core.errors import ContentError, NewsletterError
from newsletter.delivery.daily_cap import CapStatus, cap_reached_line, read_cap_status
from newsletter.delivery.plan import plan_send
from newsletter.delivery.proofs import proof_addresses, send_test_copies
from newsletter.ledger.deliveries import read_summary
from newsletter.review.approval import (
    approvals_path,
    approve_issue,
    check_approval,
    describe_part,
    require_approval,
)
from newsletter.review.unsubscribe_secret import unsubscribe_secret_problems
from newsletter.review.validate import transport_problems
from newsletter.web.studio.issue_form import form_from_data
from newsletter.web.studio.pages import json_response, redirect
from newsletter.web.studio.roundtrip import edited_text, load_document

if TYPE_CHECKING:
    from pathlib import Path

    from newsletter.core.project import Project
    from newsletter.web.studio.app import Studio

APPROVED_COPIES = "var/studio/approved"


def _issue(studio: Studio, issue_id: str) -> tuple[Project, Path]:
    project = studio.project()
    return project, studio.issue_path(project, issue_id)


def _content_errors(error: ContentError, root: Path) -> list[str]:
    found = []
    for problem in error.problems:
        if problem.is_error:
            try:
                where = problem.path.resolve().relative_to(root.resolve())
            except ValueError:
                where = problem.path
            found.append(f"{where}:{problem.line}: {problem.message}")
    return found


# --- a test copy ---------------------------------------------------------------------


def test_copy(studio: Studio, request: Request, issue_id: str) -> Response:
    project, path = _issue(studio, issue_id)
    typed = request.form.get("addresses", "") if request.method == "POST" else ""
    error: str | None = None
    errors: list[str] = []
    copies: list[Any] = []
    if request.method == "POST":
        try:
            addresses = proof_addresses([typed.replace(";", ",")])
            issue = project.load_issue(path)
            copies = send_test_copies(project, issue, addresses)
        except ContentError as problem:
            errors = _content_errors(problem, project.root_dir)
        except NewsletterError as problem:
            error = str(problem).replace("--test-to", "Send a test copy")
    status = 400 if error or errors else 200
    return studio.pages.page(
        "test_copy.html.j2",
        status,
        issue_id=issue_id,
        typed=typed,
        error=error,
        errors=errors,
        copies=copies,
    )


# --- approving -----------------------------------------------------------------------


def _approved_copy(project: Project, issue_id: str) -> Path:
    return project.root_dir / APPROVED_COPIES / f"{issue_id}.yaml"


def issue_diff(earlier: str, now: str, name: str) -> list[tuple[str, str]]:
    """The issue's changes since it was approved, as (kind, line) for the page to colour."""
    lines = difflib.unified_diff(
        earlier.splitlines(),
        now.splitlines(),
        f"{name} (approved)",
        f"{name} (now)",
        n=2,
        lineterm="",
    )
    kinds = {"+": "added", "-": "removed", "@": "place"}
    return [(kinds.get(line[:1], "same"), line) for line in list(lines)[2:]]


def approve(studio: Studio, request: Request, issue_id: str) -> Response:
    project, path = _issue(studio, issue_id)
    zone = project.settings.zone
    errors: list[str] = []
    name = request.form.get("by", "").strip() if request.method == "POST" else ""
    recorded = None
    if request.method == "POST":
        try:
            recorded = approve_issue(project, path, name)
        except ContentError as problem:
            errors = _content_errors(problem, project.root_dir)
        except NewsletterError as problem:
            errors = [str(problem).replace("--by", "Your name")]
        else:
            write_text_atomic(_approved_copy(project, issue_id), path.read_text(encoding="utf-8"))
    status = check_approval(project, path)
    copy = _approved_copy(project, issue_id)
    diff: list[tuple[str, str]] | None = None
    if status.changed and copy.is_file():
        now_text = path.read_text(encoding="utf-8")
        diff = issue_diff(copy.read_text(encoding="utf-8"), now_text, path.name)
    return studio.pages.page(
        "approve.html.j2",
        400 if errors else 200,
        issue_id=issue_id,
        status=status,
        summary=status.summary(zone),
        changed=[describe_part(part) for part in status.changed],
        diff=diff,
        has_copy=copy.is_file(),
        errors=errors,
        name=name,
        recorded=recorded,
        record_path=approvals_path(project, path).relative_to(project.root_dir).as_posix(),
    )


# --- sending now, or scheduling ----------------------------------------------------------


def _gates(project: Project, path: Path) -> list[str]:
    """What stops a real send, in the command's words: approval, settings, secrets."""
    reasons = []
    status = check_approval(project, path)
    if not status.approved:
        reasons.append(status.refusal(project.settings.zone))
    settings = project.settings
    for problem in transport_problems(settings) + unsubscribe_secret_problems(settings):
        if problem.is_error:
            reasons.append(problem.message)
    return reasons


def _schedule(project: Project, path: Path, send_date: str, send_time: str) -> None:
    """Write `send_at` into the issue file, as editing it by hand would."""
    text = path.read_text(encoding="utf-8")
    zone = project.settings.zone
    form = form_from_data(load_document(text), zone)
    changed = dataclasses.replace(form, send_date=send_date, send_time=send_time)
    write_text_atomic(path, edited_text(text, changed, zone))


def send(studio: Studio, request: Request, issue_id: str) -> Response:
    project, path = _issue(studio, issue_id)
    errors: list[str] = []
    action = request.form.get("action", "") if request.method == "POST" else ""
    if action == "send":
        try:
            require_approval(project, project.load_issue(path))
            if not _gates(project, path):
                studio.jobs.start(issue_id)
                return redirect(f"/issues/{issue_id}/progress")
        except ContentError as problem:
            errors = _content_errors(problem, project.root_dir)
        except NewsletterError as problem:
            errors = [str(problem)]
    elif action == "schedule":
        _schedule(
            project, path, request.form.get("send_date", ""), request.form.get("send_time", "")
        )
        return redirect(f"/issues/{issue_id}/send?scheduled=1")
    try:
        issue = project.load_issue(path)
        plan = plan_send(project, issue)
    except ContentError as problem:
        return studio.pages.page(
            "send.html.j2",
            400,
            issue_id=issue_id,
            plan=None,
            errors=_content_errors(problem, project.root_dir),
            gates=[],
            form=None,
            scheduled=False,
            running=studio.jobs.running(issue_id),
        )
    zone = project.settings.zone
    return studio.pages.page(
        "send.html.j2",
        400 if errors else 200,
        issue_id=issue_id,
        plan=plan,
        issue=issue,
        errors=errors,
        gates=_gates(project, path),
        form=form_from_data(load_document(path.read_text(encoding="utf-8")), zone),
        zone=zone.key,
        scheduled=request.args.get("scheduled") == "1",
        running=studio.jobs.running(issue_id),
    )


# --- progress ----------------------------------------------------------------------------


def progress_state(studio: Studio, issue_id: str) -> dict[str, Any]:
    """Counts from the ledger, the rate so far and the time left, and whether it still runs."""
    project, _ = _issue(studio, issue_id)
    summary = read_summary(project.settings.ledger_path, issue_id)
    counts = dict(summary.counts_present()) if summary is not None else {}
    total = summary.total if summary is not None else 0
    done = sum(n for state, n in counts.items() if state not in ("pending", "sending"))
    rate = None
    left = None
    if summary is not None and summary.started_at and done:
        started = datetime.fromisoformat(summary.started_at).timestamp()
        elapsed = max(time.time() - started, 0.001)
        rate = done / elapsed
        left = (total - done) / rate if rate else None
    outcome = studio.jobs.outcome(issue_id)
    return {
        "daily_cap": daily_cap_line(project),
        "issue": issue_id,
        "running": studio.jobs.running(issue_id),
        "total": total,
        "done": done,
        "counts": counts,
        "complete": bool(summary is not None and summary.complete),
        "rate_per_second": round(rate, 1) if rate is not None else None,
        "seconds_left": round(left) if left is not None else None,
        "exit_code": outcome.exit_code if outcome else None,
        "stopped": bool(outcome and outcome.stopped),
        "messages": outcome.messages if outcome and outcome.exit_code else "",
    }


def daily_cap_line(project: Project) -> str:
    """Where `rate.per_day` stands, in the words `schedule` uses; "" with no daily cap."""
    per_day = project.settings.rate.per_day
    if per_day is None:
        return ""
    now = time.time()
    status = read_cap_status(project.settings.ledger_path, per_day, datetime.now(UTC))
    status = status or CapStatus(per_day, sent=0, reopens_at=None)  # nothing sent yet
    if status.reached:
        line = cap_reached_line(status, project.settings.zone, now)
        return f"{line[0].upper()}{line[1:]}: the next dispatch carries on, or press Send now again then."
    return (
        f"Daily cap: {status.per_day:,} a day (rate.per_day); {status.sent:,} sent in the "
        f"last 24 hours, {status.left:,} more can go today."
    )


def progress(studio: Studio, request: Request, issue_id: str) -> Response:
    return studio.pages.page(
        "progress.html.j2", issue_id=issue_id, state=progress_state(studio, issue_id)
    )


def progress_json(studio: Studio, request: Request, issue_id: str) -> Response:
    return json_response(progress_state(studio, issue_id))


def stop(studio: Studio, request: Request, issue_id: str) -> Response:
    studio.issue_path(studio.project(), issue_id)
    studio.jobs.stop(issue_id)
    return redirect(f"/issues/{issue_id}/progress")
