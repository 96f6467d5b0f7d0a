"""Which issues are due: where each issue file stands at a given moment.

`newsletter schedule` lists it, and the cron run (`dispatch.py`) acts on it:
an issue whose `send_at` has passed and whose ledger is not complete needs
sending, if it is approved as the files stand now (`approval.py`). An issue
someone approved that has changed since (or that still needs another
approver) is not sent, but it is not a draft either: dispatch refuses it
loudly. An issue more than `catch_up_days` overdue is shown as `overdue`
("overdue, held") and left alone unless asked, so a server restored from an
old backup does not mail last quarter's update. The dispatch log's last
word on an issue (a failed attempt, a hold already reported) shows here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from newsletter.content.issue import Issue
from newsletter.content.send_time import resolve_send_at
from newsletter.core.errors import ContentError, NewsletterError, Problem
from newsletter.core.project import Project
from newsletter.core.yamlfile import load_yaml
from newsletter.delivery.daily_cap import CapStatus, read_cap_status, sending_detail
from newsletter.ledger.deliveries import DeliverySummary, read_summary
from newsletter.review.approval import ApprovalStatus, check_approval
from newsletter.review.unsubscribe_secret import unsubscribe_secret_problems
from newsletter.schedule.dispatch_log import last_logged

IssueState = Literal[
    "draft", "invalid", "waiting", "due", "unapproved", "sending", "sent", "failed", "overdue"
]


# --- time ------------------------------------------------------------------


def parse_now(text: str, zone: ZoneInfo) -> datetime:
    """Read a `--now` value: ISO 8601, with an offset or as local time in `zone`."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise NewsletterError(
            f"--now `{text}` is not an ISO 8601 date and time, e.g. 2023-05-15T09:00:00+01:00"
        ) from None
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment
    when, error, _ = resolve_send_at(moment, zone)
    if when is None:
        raise NewsletterError((error or "").replace("`send_at`", "--now"))
    return when


def describe_duration(span: timedelta) -> str:
    """A rough, readable length of time: '2 days 3 hours', '5 minutes', 'less than a minute'."""
    seconds = int(abs(span).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [(days, "day"), (hours, "hour")] if days else [(hours, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "less than a minute"


# --- the schedule ----------------------------------------------------------


@dataclass(frozen=True)
class ScheduleEntry:
    """One issue file and where it stands: the rows of `newsletter schedule`.

    `approved` is whether it may be sent as the files stand now; `approval`
    says by whom, or what changed (None when the approvals file cannot be
    read: that problem is among `problems`).
    """

    issue_id: str
    path: Path
    title: str
    send_at: datetime | None
    approved: bool
    state: IssueState
    detail: str
    issue: Issue | None = None
    problems: tuple[Problem, ...] = ()
    ledger: DeliverySummary | None = None
    overdue: bool = False  # further past send_at than the catch-up window
    due: bool = True  # send_at has passed (or cannot be read)
    approval: ApprovalStatus | None = None
    last_logged: Mapping[str, Any] = field(default_factory=dict)  # the dispatch log's last word

    @property
    def submitted(self) -> bool:
        """Approved now, or approved once (by someone) and changed or short of approvers since.

        A draft nobody approved is not submitted; dispatch leaves it alone quietly.
        An approvals file that cannot be read counts as submitted, so dispatch says so.
        """
        return _submitted(self.approval)

    @property
    def needs_sending(self) -> bool:
        """Submitted, due and not finished: what a dispatch run works on (sends or refuses)."""
        finished = self.ledger is not None and self.ledger.complete
        return self.submitted and self.due and not finished

    def approval_text(self, zone: ZoneInfo) -> str:
        """Approved by whom and when, "changed since approval (...)", or "not approved"."""
        if self.approval is None:
            return "approvals file cannot be read"
        return self.approval.summary(zone)

    def as_dict(self, now: datetime, zone: ZoneInfo | None = None) -> dict[str, Any]:
        left = (self.send_at - now).total_seconds() if self.send_at else None
        return {
            "id": self.issue_id,
            "path": str(self.path),
            "title": self.title,
            "approved": self.approved,
            "approval": self.approval_text(zone or ZoneInfo("UTC")),
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "state": self.state,
            "detail": self.detail,
            "seconds_until_due": round(left) if left is not None else None,
            "counts": self.ledger.counts_present() if self.ledger else {},
            "needs_attention": self.ledger.needs_attention if self.ledger else {},
            "complete": self.ledger.complete if self.ledger else False,
            "errors": [str(p) for p in self.problems if p.is_error],
        }


def _submitted(status: ApprovalStatus | None) -> bool:
    return True if status is None else status.submitted


def _counts_text(summary: DeliverySummary) -> str:
    present = sorted(summary.counts_present().items())
    return ", ".join(f"{n} {state}" for state, n in present) or "no recipients"


def _attention_text(summary: DeliverySummary) -> str:
    """For people no automatic run sends to again: the command that does, when asked."""
    waiting = summary.needs_attention
    parts = []
    if waiting.get("unknown"):
        parts.append(f"`newsletter retry {summary.issue_id} --unknown` resends the unknown")
    if waiting.get("gave-up"):
        parts.append(f"`newsletter retry {summary.issue_id}` tries the gave-up again")
    return "; " + "; ".join(parts) if parts else ""


def _approval(project: Project, path: Path) -> tuple[ApprovalStatus | None, tuple[Problem, ...]]:
    """The issue's approval as the files stand now, or the problems reading its approvals file."""
    try:
        return check_approval(project, path), ()
    except ContentError as error:
        return None, error.problems


@dataclass(frozen=True)
class IssueFacts:
    """Everything the schedule knows about one issue file at a moment, before deciding its state."""

    path: Path
    issue_id: str
    title: str
    send_at: datetime | None
    unscheduled: bool  # no `send_at` at all (an unreadable one still counts as meant to go)
    issue: Issue | None
    problems: tuple[Problem, ...]
    approval: ApprovalStatus | None
    ledger: DeliverySummary | None
    last_logged: Mapping[str, Any]
    cap: CapStatus | None  # the daily cap, read only for an issue part-sent

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def approved(self) -> bool:
        return self.approval is not None and self.approval.approved


@dataclass(frozen=True)
class Placement:
    """Where an issue stands: its state, the words for it, and whether dispatch may act on it."""

    state: IssueState
    detail: str
    due: bool = True
    overdue: bool = False


def _identity(
    project: Project, path: Path
) -> tuple[Issue | None, tuple[Problem, ...], dict[str, Any]]:
    """The issue, or the problems loading it and its raw fields (a broken file still says when)."""
    try:
        return project.load_issue(path), (), {}
    except ContentError as error:
        data = load_yaml(path).data
        return None, error.problems, data if isinstance(data, dict) else {}


def gather_facts(
    project: Project, path: Path, now: datetime, logged: Mapping[str, Mapping[str, Any]]
) -> IssueFacts:
    """Read what decides one issue's state: its file, approval, ledger, log and the daily cap."""
    settings = project.settings
    issue, problems, raw = _identity(project, path)
    if issue is not None:
        issue_id, title, send_at = issue.id, issue.title, issue.send_at
        unscheduled = issue.send_at is None
    else:
        issue_id = str(raw.get("id") or path.stem)
        title = str(raw.get("title") or "")
        send_at, _, _ = resolve_send_at(raw.get("send_at"), settings.zone)
        unscheduled = raw.get("send_at") is None
    approval, approval_problems = _approval(project, path)
    # What stops every send stops this one: said here, not first by dispatch's refusal.
    sending_problems = tuple(unsubscribe_secret_problems(settings))
    ledger = read_summary(settings.ledger_path, issue_id)
    part_sent = ledger is not None and ledger.started and not ledger.complete
    cap = read_cap_status(settings.ledger_path, settings.rate.per_day, now) if part_sent else None
    return IssueFacts(
        path, issue_id, title, send_at, unscheduled, issue,
        problems + approval_problems + sending_problems,
        approval, ledger, logged.get(issue_id, {}), cap,
    )  # fmt: skip


def part_sent_text(summary: DeliverySummary) -> str:
    """ "part-sent 20 of 67": people sent to, of everyone not suppressed."""
    total = summary.total - summary.counts.get("suppressed", 0)
    return f"part-sent {summary.counts.get('sent', 0):,} of {total:,}"


def _finished(ledger: DeliverySummary) -> Placement:
    failed = ledger.counts.get("failed-permanent", 0)
    delivered = ledger.counts.get("sent", 0)
    state: IssueState = "failed" if failed and not delivered else "sent"
    return Placement(state, _counts_text(ledger) + _attention_text(ledger))


def _not_going(facts: IssueFacts) -> Placement | None:
    """A draft, or an issue nobody will dispatch: never approved, or no `send_at`."""
    ledger = facts.ledger
    started = ledger is not None and ledger.started
    if not _submitted(facts.approval):
        if started and ledger is not None and facts.approval is not None:
            again = facts.approval.approve_command
            return Placement("unapproved", f"{part_sent_text(ledger)}; not approved now: {again}")
        fix = f"; {len(facts.errors)} error(s) to fix first" if facts.errors else ""
        return Placement("draft", f"not approved yet{fix}")
    if facts.unscheduled:
        if started and ledger is not None:
            carry_on = f"`newsletter send {facts.issue_id} --send` carries on"
            return Placement("sending", f"{part_sent_text(ledger)}; {carry_on}", due=False)
        add = "approved but not scheduled: add `send_at` for dispatch to send it"
        return Placement("draft", add, due=False)
    return None


def _sending(facts: IssueFacts, now: datetime, zone: ZoneInfo) -> Placement:
    ledger = facts.ledger
    assert ledger is not None
    if facts.cap is not None and facts.cap.reached:
        return Placement("sending", sending_detail(ledger, facts.cap, zone, now.timestamp()))
    return Placement(
        "sending",
        f"{part_sent_text(ledger)} ({_counts_text(ledger)}); the next dispatch carries on"
        f"{_attention_text(ledger)}",
    )


def decide_placement(
    facts: IssueFacts, now: datetime, catch_up_days: int, zone: ZoneInfo
) -> Placement:
    """Where the issue stands at `now`, from its facts alone (reads nothing)."""
    ledger, approval, errors = facts.ledger, facts.approval, facts.errors
    if ledger is not None and ledger.complete:
        return _finished(ledger)
    quiet = _not_going(facts)
    if quiet is not None:
        return quiet
    again = (
        ""
        if facts.approved or approval is None
        else f"; approve it again: {approval.approve_command}"
    )
    if facts.send_at is not None and facts.send_at > now:
        left = f"sends in {describe_duration(facts.send_at - now)}"
        if errors:
            return Placement("invalid", f"{left}, but {errors[0]}", due=False)
        return Placement("waiting", left + again, due=False)
    late = now - facts.send_at if facts.send_at is not None else timedelta(0)
    if late > timedelta(days=catch_up_days):
        return Placement(
            "overdue",
            f"overdue, held: was due {describe_duration(late)} ago, more than the "
            f"{catch_up_days}-day catch-up window; `newsletter dispatch --catch-up` sends it",
            overdue=True,
        )
    if errors:
        return Placement("invalid", f"due, but {errors[0]}")
    if approval is not None and not facts.approved:
        return Placement("unapproved", f"due, but not sent{again}")
    if facts.last_logged.get("action") == "failed":
        return Placement("failed", f"last attempt failed: {facts.last_logged.get('error', '')}")
    if ledger is not None and ledger.started:
        return _sending(facts, now, zone)
    return Placement("due", "the next dispatch sends it")


def schedule_entry(
    project: Project, path: Path, now: datetime, logged: Mapping[str, Mapping[str, Any]]
) -> ScheduleEntry:
    """Where one issue file stands at `now`."""
    settings = project.settings
    facts = gather_facts(project, path, now, logged)
    placed = decide_placement(facts, now, settings.catch_up_days, settings.zone)
    return ScheduleEntry(
        facts.issue_id,
        path,
        facts.title,
        facts.send_at,
        facts.approved,
        placed.state,
        placed.detail,
        facts.issue,
        facts.problems,
        facts.ledger,
        overdue=placed.overdue,
        due=placed.due,
        approval=facts.approval,
        last_logged=facts.last_logged,
    )


def issue_schedule(project: Project, now: datetime) -> list[ScheduleEntry]:
    """Every issue file in the project with its state at `now`, earliest send_at first."""
    logged = last_logged(project.settings.dispatch_log_path)
    entries = [schedule_entry(project, path, now, logged) for path in project.issue_paths()]
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(entries, key=lambda e: (e.send_at or far_future, e.issue_id))
