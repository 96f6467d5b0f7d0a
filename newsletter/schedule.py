"""Which issues are due, and the one run of `newsletter dispatch` that cron makes.

Cron or a systemd timer runs `newsletter dispatch` every few minutes on a
server nobody watches. Each run takes a process lock (so two runs never send
at once), looks at every issue file, and sends the approved ones whose
`send_at` has passed and whose ledger is not complete, through the delivery
machinery in `dispatch.py`; the ledger makes a crashed run resumable and a
finished one a no-op. An issue more than `catch_up_days` overdue is left
alone unless asked, so a server restored from an old backup does not mail
last quarter's update. Each issue acted on gets one JSON line in the dispatch
log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from newsletter import dispatch
from newsletter.content import Issue, resolve_send_at
from newsletter.errors import ContentError, LockHeldError, NewsletterError, Problem
from newsletter.ledger import LedgerSummary, read_summary
from newsletter.private_files import private_dir, private_opener
from newsletter.project import Project
from newsletter.yamlfile import load_yaml

IssueState = Literal["draft", "invalid", "waiting", "due", "sending", "sent", "failed", "overdue"]
Action = Literal["sent", "incomplete", "planned", "skipped", "invalid", "failed"]


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
    """One issue file and where it stands: the rows of `newsletter schedule`."""

    issue_id: str
    path: Path
    title: str
    send_at: datetime | None
    approved: bool
    state: IssueState
    detail: str
    issue: Issue | None = None
    problems: tuple[Problem, ...] = ()
    ledger: LedgerSummary | None = None
    overdue: bool = False  # further past send_at than the catch-up window
    due: bool = True  # send_at has passed (or cannot be read)

    @property
    def needs_sending(self) -> bool:
        """Approved, due and not finished: what a dispatch run works on."""
        finished = self.ledger is not None and self.ledger.complete
        return self.approved and self.due and not finished

    def as_dict(self, now: datetime) -> dict[str, Any]:
        left = (self.send_at - now).total_seconds() if self.send_at else None
        return {
            "id": self.issue_id,
            "path": str(self.path),
            "title": self.title,
            "approved": self.approved,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "state": self.state,
            "detail": self.detail,
            "seconds_until_due": round(left) if left is not None else None,
            "counts": dict(self.ledger.counts) if self.ledger else {},
            "complete": self.ledger.complete if self.ledger else False,
            "errors": [str(p) for p in self.problems if p.is_error],
        }


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no recipients"


def _failed_permanently(counts: Mapping[str, int]) -> int:
    return counts.get("failed-permanent", 0)


def last_logged(log_path: Path) -> dict[str, dict[str, Any]]:
    """The most recent dispatch log entry for each issue id (unreadable lines ignored)."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        handle = log_path.open(encoding="utf-8")
    except FileNotFoundError:
        return latest
    with handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash must not hide the rest
            if isinstance(entry, dict) and isinstance(entry.get("issue"), str):
                latest[entry["issue"]] = entry
    return latest


def schedule_entry(
    project: Project, path: Path, now: datetime, logged: Mapping[str, Mapping[str, Any]]
) -> ScheduleEntry:
    """Where one issue file stands at `now`."""
    settings = project.settings
    issue: Issue | None = None
    problems: tuple[Problem, ...] = ()
    send_at: datetime | None
    try:
        issue = project.load_issue(path)
    except ContentError as error:
        problems = error.problems
    if issue is not None:
        issue_id, title, send_at, approved = issue.id, issue.title, issue.send_at, issue.approved
    else:
        # A broken file still says whether it is approved and when it is meant to go,
        # so the schedule can show an approved issue that would fail to send.
        data = load_yaml(path).data
        raw = data if isinstance(data, dict) else {}
        issue_id = str(raw.get("id") or path.stem)
        title = str(raw.get("title") or "")
        send_at, _, _ = resolve_send_at(raw.get("send_at"), settings.zone)
        approved = raw.get("approved") is True

    def entry(state: IssueState, detail: str, **extra: Any) -> ScheduleEntry:
        return ScheduleEntry(
            issue_id, path, title, send_at, approved, state, detail, issue, problems, **extra
        )

    errors = [p for p in problems if p.is_error]
    ledger = read_summary(settings.ledger_path, issue_id)
    if ledger is not None and ledger.complete:
        failed = _failed_permanently(ledger.counts)
        delivered = ledger.counts.get("sent", 0)
        state: IssueState = "failed" if failed and not delivered else "sent"
        return entry(state, _counts_text(ledger.counts), ledger=ledger)
    if not approved:
        fix = f"; {len(errors)} error(s) to fix first" if errors else ""
        return entry("draft", f"not approved yet{fix}", ledger=ledger)
    if send_at is not None and send_at > now:
        left = f"sends in {describe_duration(send_at - now)}"
        if errors:
            return entry("invalid", f"{left}, but {errors[0]}", ledger=ledger, due=False)
        return entry("waiting", left, ledger=ledger, due=False)
    late = now - send_at if send_at is not None else timedelta(0)
    if late > timedelta(days=settings.catch_up_days):
        return entry(
            "overdue",
            f"was due {describe_duration(late)} ago, more than the "
            f"{settings.catch_up_days}-day catch-up window; "
            "`newsletter dispatch --catch-up` sends it",
            ledger=ledger,
            overdue=True,
        )
    if errors:
        return entry("invalid", f"due, but {errors[0]}", ledger=ledger)
    last = logged.get(issue_id, {})
    if last.get("action") == "failed":
        return entry("failed", f"last attempt failed: {last.get('error', '')}", ledger=ledger)
    if ledger is not None and ledger.started:
        return entry(
            "sending",
            f"{_counts_text(ledger.counts)}; the next dispatch carries on",
            ledger=ledger,
        )
    return entry("due", "the next dispatch sends it", ledger=ledger)


def issue_schedule(project: Project, now: datetime) -> list[ScheduleEntry]:
    """Every issue file in the project with its state at `now`, earliest send_at first."""
    logged = last_logged(project.settings.dispatch_log_path)
    entries = [schedule_entry(project, path, now, logged) for path in project.issue_paths()]
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(entries, key=lambda e: (e.send_at or far_future, e.issue_id))


# --- the process lock --------------------------------------------------------


@contextlib.contextmanager
def dispatch_lock(lock_path: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the dispatch lock (`flock` on `lock_path`) for the duration of the block.

    The kernel drops the lock when the process exits however it ends, so a
    crashed run never leaves a stale lock behind. Without `wait`, a lock held
    by another run raises LockHeldError at once.
    """
    private_dir(lock_path.parent)
    handle = open(lock_path, "a+", encoding="utf-8", opener=private_opener)  # noqa: SIM115
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise LockHeldError(
                f"another dispatch is already running{who}; it holds {lock_path}. "
                "This run did nothing; the next one will carry on (or use --wait)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock


# --- the dispatch log ----------------------------------------------------------


def append_log(log_path: Path, entry: Mapping[str, Any]) -> None:
    """Append one JSON line to the dispatch log."""
    private_dir(log_path.parent)
    line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
    # One write call on an O_APPEND file, so a line is never interleaved with another.
    fd = private_opener(log_path, os.O_RDWR | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # end a line left torn by a crash, so this one stands alone
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


# --- one dispatch run ---------------------------------------------------------


@dataclass(frozen=True)
class IssueOutcome:
    """What one dispatch run did with one issue."""

    issue_id: str
    action: Action
    message: str
    counts: Mapping[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    @property
    def is_failure(self) -> bool:
        return self.action in ("invalid", "failed") or self.counts.get("failed_permanent", 0) > 0


@dataclass(frozen=True)
class DispatchRun:
    """The result of `newsletter dispatch`: one outcome per issue it acted on."""

    now: datetime
    outcomes: tuple[IssueOutcome, ...]
    schedule: tuple[ScheduleEntry, ...]
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        """0 when all is well, 1 for content errors or failed deliveries."""
        return 1 if any(o.is_failure for o in self.outcomes) else 0

    def summary_lines(self) -> list[str]:
        """A short account for the person (or cron mail) reading the output."""
        prefix = "dry run: " if self.dry_run else ""
        lines = [f"{prefix}{o.issue_id}: {o.message}" for o in self.outcomes]
        if not self.outcomes:
            states: dict[str, int] = {}
            for entry in self.schedule:
                states[entry.state] = states.get(entry.state, 0) + 1
            what = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no issues"
            lines.append(f"{prefix}nothing to send ({what})")
            waiting = [e for e in self.schedule if e.state == "waiting"]
            if waiting:
                lines.append(f"next: {waiting[0].issue_id} {waiting[0].detail}")
        return lines


Progress = Callable[[str, int, int], None]


def run_dispatch(
    project: Project,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    catch_up: bool = False,
    wait: bool = False,
    transport_name: str | None = None,
    progress: Progress | None = None,
) -> DispatchRun:
    """Send every approved issue that is due and not finished: what cron runs.

    Takes the process lock first (a dry run, which writes nothing, does not),
    then decides from the issue files and the ledger, so a second run right
    after the first finds nothing left to do.
    """
    moment = now or datetime.now(UTC)
    lock = (
        contextlib.nullcontext()
        if dry_run
        else dispatch_lock(project.settings.lock_path, wait=wait)
    )
    with lock:
        schedule = issue_schedule(project, moment)
        outcomes = [
            _dispatch_one(project, entry, moment, dry_run, catch_up, transport_name, progress)
            for entry in schedule
            if entry.needs_sending
        ]
    return DispatchRun(moment, tuple(outcomes), tuple(schedule), dry_run)


def _dispatch_one(
    project: Project,
    entry: ScheduleEntry,
    now: datetime,
    dry_run: bool,
    catch_up: bool,
    transport_name: str | None,
    progress: Progress | None,
) -> IssueOutcome:
    started = datetime.now(UTC)
    clock = time.monotonic()
    outcome = _decide_and_send(project, entry, now, dry_run, catch_up, transport_name, progress)
    if not dry_run:
        append_log(
            project.settings.dispatch_log_path,
            {
                "issue": entry.issue_id,
                "action": outcome.action,
                "now": now.isoformat(),
                "started_at": started.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "seconds": round(time.monotonic() - clock, 3),
                "send_at": entry.send_at.isoformat() if entry.send_at else None,
                "transport": transport_name or project.settings.transport,
                "counts": dict(outcome.counts),
                "message": outcome.message,
                "errors": list(outcome.errors),
                **({"error": outcome.errors[0]} if outcome.errors else {}),
            },
        )
    return outcome


def _decide_and_send(
    project: Project,
    entry: ScheduleEntry,
    now: datetime,
    dry_run: bool,
    catch_up: bool,
    transport_name: str | None,
    progress: Progress | None,
) -> IssueOutcome:
    issue_id = entry.issue_id
    if entry.state == "invalid" or entry.issue is None:
        errors = tuple(str(p) for p in entry.problems if p.is_error)
        return IssueOutcome(
            issue_id, "invalid", f"not sent: {len(errors)} error(s) in the content", errors=errors
        )
    if entry.overdue and not catch_up:
        return IssueOutcome(issue_id, "skipped", f"skipped: {entry.detail}")
    issue = entry.issue
    if dry_run:
        plan = dispatch.plan_send(project, issue, transport_name=transport_name)
        return IssueOutcome(
            issue_id,
            "planned",
            f"would send {plan.to_send} of {plan.recipients} via {plan.transport}"
            f" ({plan.already_sent} already sent, {plan.suppressed} suppressed)",
            {"to_send": plan.to_send, "already_sent": plan.already_sent},
        )

    def report(step: dispatch.DispatchProgress) -> None:
        if progress is not None:
            progress(issue_id, step.done, step.total)

    try:
        result = dispatch.send_issue(
            project,
            issue,
            transport_name=transport_name,
            progress=report if progress else None,
            now=now,
        )
    except NewsletterError as error:
        # A refused connection or rejected key: say so, keep going with other issues.
        return IssueOutcome(issue_id, "failed", f"not sent: {error}", errors=(str(error),))
    counts = _result_counts(result)
    finished = read_summary(project.settings.ledger_path, issue_id)
    done = finished is not None and finished.complete
    message = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
    if done:
        return IssueOutcome(issue_id, "sent", f"finished: {message or 'nothing to send'}", counts)
    details = tuple(f"{f.email}: {f.detail}" for f in result.failures[:5])
    if result.sent == 0 and result.failed_temporary:
        # Nothing got through at all (relay down, refused, rate-limited): a failed run, so
        # cron mail or a failed systemd unit tells someone, though the next tick tries again.
        return IssueOutcome(
            issue_id,
            "failed",
            f"nothing delivered ({message}); the next dispatch tries again",
            counts,
            details or (f"{result.failed_temporary} deliveries failed temporarily",),
        )
    return IssueOutcome(
        issue_id,
        "incomplete",
        f"{message or 'nothing sent'}; the rest will be retried by the next dispatch",
        counts,
    )


RESULT_COUNTS = (
    "sent",
    "failed_temporary",
    "failed_permanent",
    "suppressed",
    "skipped_already_sent",
    "recovered",
)


def _result_counts(result: dispatch.DispatchResult) -> dict[str, int]:
    return {name: int(getattr(result, name)) for name in RESULT_COUNTS}
