"""The pages for afterwards: who got an issue (searchable, as CSV) and the do-not-send list.

The report is `delivery.report.delivery_report`, as `newsletter report`
shows it; its CSV escapes cells a spreadsheet would run as formulas
(`core.csvcells`). The do-not-send list is
recipients/suppressed.csv, changed only through `audience.suppression`;
taking someone off it asks for confirmation first.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import TYPE_CHECKING

from werkzeug.wrappers import Request, Response

from newsletter.audience.lists import read_suppressed
from newsletter.audience.suppression import add_suppression, remove_suppression
from newsletter.core.checks import email_problem
from newsletter.core.csvcells import write_row
from newsletter.delivery.report import DeliveryReport, delivery_report
from newsletter.web.studio.pages import common_headers, redirect

if TYPE_CHECKING:
    from newsletter.web.studio.app import Studio

REPORT_COLUMNS = ("email", "status", "reason", "at")
MAX_REASON = 200
SHOWN_AT_ONCE = 500


def _report(studio: Studio, issue_id: str) -> DeliveryReport:
    project = studio.project()
    studio.issue_path(project, issue_id)
    return delivery_report(project, issue_id)


def report(studio: Studio, request: Request, issue_id: str) -> Response:
    found = _report(studio, issue_id)
    query = request.args.get("q", "").strip().lower()
    status = request.args.get("status", "")
    rows = [
        r
        for r in found.recipients
        if (not query or query in r.email.lower()) and (not status or r.status == status)
    ]
    return studio.pages.page(
        "report.html.j2",
        issue_id=issue_id,
        report=found,
        rows=rows[:SHOWN_AT_ONCE],
        matched=len(rows),
        query=query,
        status=status,
        statuses=list(found.status_counts()),
        counts=found.status_counts(),
    )


def report_csv(studio: Studio, request: Request, issue_id: str) -> Response:
    """The report as CSV; a cell a spreadsheet would run as a formula is kept as text."""
    found = _report(studio, issue_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(write_row(REPORT_COLUMNS))
    writer.writerows(write_row((r.email, r.status, r.reason, r.at or "")) for r in found.recipients)
    body = buffer.getvalue()
    headers = {
        **common_headers(),
        "Content-Disposition": f'attachment; filename="{issue_id}-report.csv"',
    }
    return Response(body, content_type="text/csv; charset=utf-8", headers=headers)


# --- the do-not-send list ------------------------------------------------------------------


def suppressed(studio: Studio, request: Request) -> Response:
    project = studio.project()
    path = project.paths.suppressed_path
    error = None
    address = ""
    reason = ""
    if request.method == "POST":
        address = request.form.get("address", "").strip()
        reason = " ".join(request.form.get("reason", "").split())[:MAX_REASON] or "studio"
        error = email_problem(address)
        if error is None:
            today = datetime.now(project.settings.zone).date()
            add_suppression(path, address, reason, today)
            return redirect(f"/suppressed?added={address}")
    rows, _ = read_suppressed(path)
    query = request.args.get("q", "").strip().lower()
    listed = sorted(
        (s for s in rows.values() if not query or query in s.email.lower()), key=lambda s: s.email
    )
    return studio.pages.page(
        "suppressed.html.j2",
        400 if error else 200,
        rows=listed,
        total=len(rows),
        query=query,
        error=error,
        address=address,
        reason=reason if error else "",
        added=request.args.get("added", ""),
        removed=request.args.get("removed", ""),
    )


def resubscribe(studio: Studio, request: Request) -> Response:
    """Ask first (GET), then take the address off the list (POST with confirm=yes)."""
    project = studio.project()
    path = project.paths.suppressed_path
    address = request.values.get("address", "").strip()
    rows, _ = read_suppressed(path)
    entry = rows.get(address.lower())
    if entry is None:
        return studio.pages.problem(
            404, "Not on the list", "That address is not on the do-not-send list."
        )
    if request.method == "POST" and request.form.get("confirm") == "yes":
        remove_suppression(path, entry.email)
        return redirect(f"/suppressed?removed={entry.email}")
    return studio.pages.page("resubscribe.html.j2", entry=entry)
