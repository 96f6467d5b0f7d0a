"""The run of `newsletter dispatch` that cron makes: send every issue that is due.

Cron or a systemd timer runs `newsletter dispatch` every few minutes on a
server nobody watches. Each run takes a process lock (so two runs never send
at once), asks the schedule (`schedule.py`) which issues need sending, and
sends each through `send.py`; the ledger makes a crashed run resumable and a
finished one a no-op. Each issue acted on gets one JSON line in the dispatch
log (`dispatch_log.py`), and so does an error that stops the whole run.

Nobody reads the output unless the run exits non-zero (cron mails it, a
systemd unit shows as failed), so each due issue that a person must act on
makes the exit code 1:

- `invalid`: its content has errors; every run until fixed.
- `refused`: someone approved it, but it changed since (or needs another
  approver); every run until approved again. A draft nobody approved is
  left alone quietly.
- `held`: approved, but further past `send_at` than the catch-up window, so
  it is not sent without `--catch-up`. Reported (exit 1, logged) the first
  time for a given `send_at`; later runs still print it but exit 0 and add no
  log line, since nothing will change until someone decides, and a cron
  mail every five minutes would teach people to ignore cron mail.
- `failed`: nothing could be delivered (a transport that cannot work, a
  relay that refuses everything); every run, as the next one tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from newsletter.approval import require_approval
from newsletter.dispatch_log import append_log
from newsletter.errors import ContentError, LockHeldError, NewsletterError
from newsletter.ledger import read_summary
from newsletter.plan import plan_send
from newsletter.project import Project
from newsletter.schedule import ScheduleEntry, issue_schedule
from newsletter.send import SendOptions, SendProgress, send_issue

Action = Literal["sent", "incomplete", "planned", "held", "refused", "invalid", "failed"]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DispatchOptions:
    """What `newsletter dispatch` was asked to do besides sending what is due.

    `dry_run` says what would be sent and writes nothing; `catch_up` also
    sends issues more overdue than the catch-up window; `wait` waits for
    another run's lock instead of giving up; `transport` overrides the setting.
    """

    dry_run: bool = False
    catch_up: bool = False
    wait: bool = False
    transport: str | None = None


# --- the process lock --------------------------------------------------------


@contextlib.contextmanager
def dispatch_lock(lock_path: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the dispatch lock (`flock` on `lock_path`) for the duration of the block.

    The kernel drops the lock when the process exits however it ends, so a
    crashed run never leaves a stale lock behind. Without `wait`, a lock held
    by another run raises LockHeldError at once.
    """
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+", encoding="utf-8")
    except OSError as error:
        raise NewsletterError(
            f"cannot create the dispatch lock {lock_path} ({error.strerror}); "
            "make its folder writable by the user cron runs as, or set `lock_path`"
        ) from None
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


# --- one dispatch run ---------------------------------------------------------


@dataclass(frozen=True)
class IssueOutcome:
    """What one dispatch run did with one issue."""

    issue_id: str
    action: Action
    message: str
    counts: Mapping[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    reported_before: bool = False  # a hold an earlier run already reported (and logged)

    @property
    def is_failure(self) -> bool:
        """Whether a person must act: what makes the run exit 1 (see the module docstring)."""
        if self.action == "held":
            return not self.reported_before
        return (
            self.action in ("invalid", "refused", "failed")
            or self.counts.get("failed_permanent", 0) > 0
        )


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


def run_dispatch(
    project: Project,
    options: DispatchOptions | None = None,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> DispatchRun:
    """Send every approved issue that is due and not finished: what cron runs.

    Takes the process lock first (a dry run, which writes nothing, does not),
    then decides from the issue files and the ledger, so a second run right
    after the first finds nothing left to do.
    """
    options = options or DispatchOptions()
    moment = now or datetime.now(UTC)
    lock = (
        contextlib.nullcontext()
        if options.dry_run
        else dispatch_lock(project.settings.lock_path, wait=options.wait)
    )
    try:
        with lock:
            schedule = issue_schedule(project, moment)
            outcomes = [
                _dispatch_one(project, entry, moment, options, progress)
                for entry in schedule
                if entry.needs_sending
            ]
    except LockHeldError:
        raise  # another run is busy: normal, and nothing to log
    except (NewsletterError, OSError, sqlite3.Error) as error:
        if not options.dry_run:
            log_run_error(project.settings.dispatch_log_path, moment, error)
        raise
    return DispatchRun(moment, tuple(outcomes), tuple(schedule), options.dry_run)


def log_run_error(log_path: Path, now: datetime, error: BaseException) -> None:
    """Log an error that stopped a whole dispatch run, so the log tells what cron saw.

    Best effort: when the log itself cannot be written (the same unwritable
    folder, say), the error is still printed by the caller.
    """
    with contextlib.suppress(OSError):
        append_log(
            log_path,
            {
                "issue": None,
                "action": "error",
                "now": now.isoformat(),
                "at": datetime.now(UTC).isoformat(),
                "error": str(error),
            },
        )


def _dispatch_one(
    project: Project,
    entry: ScheduleEntry,
    now: datetime,
    options: DispatchOptions,
    progress: Progress | None,
) -> IssueOutcome:
    started = datetime.now(UTC)
    clock = time.monotonic()
    outcome = _decide_and_send(project, entry, now, options, progress)
    if not options.dry_run and not outcome.reported_before:
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
                "transport": options.transport or project.settings.transport,
                "counts": dict(outcome.counts),
                "message": outcome.message,
                "errors": list(outcome.errors),
                **({"error": outcome.errors[0]} if outcome.errors else {}),
                **({"warnings": list(outcome.warnings)} if outcome.warnings else {}),
            },
        )
    return outcome


def _already_reported_hold(entry: ScheduleEntry) -> bool:
    """Whether the dispatch log's last word on the issue is this same hold (same send_at)."""
    last = entry.last_logged
    send_at = entry.send_at.isoformat() if entry.send_at else None
    return last.get("action") == "held" and last.get("send_at") == send_at


def _decide_and_send(
    project: Project,
    entry: ScheduleEntry,
    now: datetime,
    options: DispatchOptions,
    progress: Progress | None,
) -> IssueOutcome:
    issue_id = entry.issue_id
    if entry.state == "invalid" or entry.issue is None:
        errors = tuple(str(p) for p in entry.problems if p.is_error)
        return IssueOutcome(
            issue_id, "invalid", f"not sent: {len(errors)} error(s) in the content", errors=errors
        )
    if entry.overdue and not options.catch_up:
        before = _already_reported_hold(entry)
        return IssueOutcome(
            issue_id,
            "held",
            entry.detail + ("; reported before" if before else ""),
            reported_before=before,
        )
    issue = entry.issue
    try:
        status = require_approval(project, issue)
    except NewsletterError as error:  # NotApproved, or an approvals file that cannot be read
        return IssueOutcome(issue_id, "refused", f"not sent: {error}", errors=(str(error),))
    warnings = (status.warning,) if status.warning else ()
    if options.dry_run:
        plan = plan_send(project, issue, SendOptions(transport=options.transport))
        return IssueOutcome(
            issue_id,
            "planned",
            f"would send {plan.to_send} of {plan.recipients} via {plan.transport}"
            f" ({plan.already_sent} already sent, {plan.suppressed} suppressed)",
            {"to_send": plan.to_send, "already_sent": plan.already_sent},
            warnings=warnings + plan.warnings,
        )

    def report(step: SendProgress) -> None:
        if progress is not None:
            progress(issue_id, step.done, step.total)

    try:
        send_options = SendOptions(transport=options.transport, message_date=now)
        result = send_issue(project, issue, send_options, progress=report if progress else None)
    except ContentError as error:
        # A template that does not render: located, like any other content error.
        errors = tuple(str(p) for p in error.problems if p.is_error)
        return IssueOutcome(
            issue_id,
            "invalid",
            f"not sent: {len(errors)} error(s) in the content",
            errors=errors,
            warnings=warnings,
        )
    except NewsletterError as error:
        # A transport that cannot work, a rejected key: say so, keep going with other issues.
        return IssueOutcome(
            issue_id, "failed", f"not sent: {error}", errors=(str(error),), warnings=warnings
        )
    counts = result.counts()
    finished = read_summary(project.settings.ledger_path, issue_id)
    done = finished is not None and finished.complete
    message = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
    if done:
        return IssueOutcome(
            issue_id,
            "sent",
            f"finished: {message or 'nothing to send'}",
            counts,
            warnings=warnings,
        )
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
            warnings,
        )
    return IssueOutcome(
        issue_id,
        "incomplete",
        f"{message or 'nothing sent'}; the rest will be retried by the next dispatch",
        counts,
        warnings=warnings,
    )
