"""The run of `newsletter dispatch` that cron makes: send every issue that is due.

Cron or a systemd timer runs `newsletter dispatch` every few minutes on a
server nobody watches. Each run takes a process lock (so two runs never send
at once), asks the schedule (`schedule.py`) which issues need sending, and
sends each through `send.py`; the ledger makes a crashed run resumable and a
finished one a no-op. Each issue acted on gets one JSON line in the dispatch
log (`dispatch_log.py`).

SIGTERM (`systemctl stop`, a reboot) and Ctrl-C stop the run cleanly: the
issue being sent stops as `send.py` describes, no further issue is started,
the lock is released, and the exit code says which signal (143 or 130), so
the next tick carries on where this one stopped.
An error that stops the whole run is logged too.

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
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from newsletter.content.issue import Issue
from newsletter.core.errors import (
    ContentError,
    Interrupted,
    LockHeldError,
    NewsletterError,
    NotApproved,
    RenderingChanged,
)
from newsletter.core.project import Project
from newsletter.core.ratelimit import ShiftedClock
from newsletter.delivery.daily_cap import cap_reached_line
from newsletter.delivery.plan import plan_send
from newsletter.delivery.send import send_issue
from newsletter.delivery.send_options import SendOptions, SendProgress, SendResult
from newsletter.delivery.stopping import RUN_AGAIN, StopSignals, Terminated, signal_name, signal_of
from newsletter.ledger.deliveries import read_summary
from newsletter.review.approval import require_approval
from newsletter.schedule.dispatch_lock import dispatch_lock
from newsletter.schedule.dispatch_log import append_log
from newsletter.schedule.due import ScheduleEntry, issue_schedule

Action = Literal[
    "sent", "incomplete", "planned", "held", "refused", "invalid", "failed", "interrupted"
]
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


# --- one dispatch run ---------------------------------------------------------


@dataclass(frozen=True)
class IssueOutcome:
    """What one dispatch run did with one issue."""

    issue_id: str
    action: Action
    message: str
    counts: Mapping[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    signum: int | None = None  # for "interrupted": the signal
    warnings: tuple[str, ...] = ()
    reported_before: bool = False  # a hold an earlier run already reported (and logged)

    @property
    def unsaid_errors(self) -> tuple[str, ...]:
        """The errors the message does not already say, to print after it (each said once)."""
        return tuple(e for e in self.errors if e not in self.message)

    @property
    def is_failure(self) -> bool:
        """Whether a person must act: what makes the run exit 1 (see the module docstring).

        The content, a refused or failed run, or people refused or left in doubt.
        """
        if self.action == "held":
            return not self.reported_before
        attention = ("failed_permanent", "unknown", "gave_up")
        return self.action in ("invalid", "refused", "failed") or any(
            self.counts.get(n, 0) for n in attention
        )


@dataclass(frozen=True)
class DispatchRun:
    """The result of `newsletter dispatch`: one outcome per issue it acted on."""

    now: datetime
    outcomes: tuple[IssueOutcome, ...]
    schedule: tuple[ScheduleEntry, ...]
    dry_run: bool = False
    stopped_by: int | None = None  # the signal that stopped the run, if one did

    @property
    def exit_code(self) -> int:
        """0 when all is well, 1 for content errors or failed deliveries, 128 + a stopping signal."""
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        return 1 if any(o.is_failure for o in self.outcomes) else 0

    def summary_lines(self) -> list[str]:
        """A short account for the person (or cron mail) reading the output."""
        prefix = "dry run: " if self.dry_run else ""
        lines = [f"{prefix}{o.issue_id}: {o.message}" for o in self.outcomes]
        if self.stopped_by is not None and not any(
            o.action == "interrupted" for o in self.outcomes
        ):
            lines.append(
                f"stopped by {signal_name(self.stopped_by)} before sending anything; "
                "the next dispatch carries on"
            )
        elif not self.outcomes:
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
    outcomes: list[IssueOutcome] = []
    schedule: list[ScheduleEntry] = []
    stopped_by: int | None = None
    try:
        with StopSignals().installed(), lock:
            schedule = issue_schedule(project, moment)
            for entry in schedule:
                if entry.needs_sending:
                    outcomes.append(_dispatch_one(project, entry, moment, options, progress))
                    if outcomes[-1].action == "interrupted":
                        stopped_by = outcomes[-1].signum
                        break
    except (KeyboardInterrupt, Terminated) as stop:  # between issues: nothing was half-sent
        stopped_by = signal_of(stop)
    except LockHeldError:
        raise  # another run is busy: normal, and nothing to log
    except (NewsletterError, OSError, sqlite3.Error) as error:
        if not options.dry_run:
            log_run_error(project.settings.dispatch_log_path, moment, error)
        raise
    return DispatchRun(moment, tuple(outcomes), tuple(schedule), options.dry_run, stopped_by)


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


@dataclass(frozen=True)
class DueFacts:
    """What dispatch knows about one issue that needs sending, before deciding what to do."""

    issue_id: str
    errors: tuple[str, ...] | None  # the content's errors, None when it is sound
    held: bool  # further past send_at than the catch-up window, and no --catch-up
    hold_detail: str
    reported_before: bool  # the dispatch log's last word is this same hold
    refusal: str | None  # why the approval refuses it (checked only for a sound, unheld issue)
    warnings: tuple[str, ...] = ()


def gather_due_facts(project: Project, entry: ScheduleEntry, options: DispatchOptions) -> DueFacts:
    """Read what decides whether to send: the content, the hold, and the approval now."""
    errors = None
    if entry.state == "invalid" or entry.issue is None:
        errors = tuple(str(p) for p in entry.problems if p.is_error)
    held = entry.overdue and not options.catch_up
    refusal: str | None = None
    warnings: tuple[str, ...] = ()
    if errors is None and not held and entry.issue is not None:
        try:
            status = require_approval(project, entry.issue)
            warnings = (status.warning,) if status.warning else ()
        except NewsletterError as error:  # NotApproved, or an approvals file that cannot be read
            refusal = str(error)
    return DueFacts(
        entry.issue_id, errors, held, entry.detail, _already_reported_hold(entry), refusal, warnings
    )


def decide_before_sending(facts: DueFacts) -> IssueOutcome | None:
    """What to do instead of sending, or None to send (reads nothing)."""
    if facts.errors is not None:
        count = len(facts.errors)
        return IssueOutcome(
            facts.issue_id,
            "invalid",
            f"not sent: {count} error(s) in the content",
            errors=facts.errors,
        )
    if facts.held:
        before = facts.reported_before
        detail = facts.hold_detail + ("; reported before" if before else "")
        return IssueOutcome(facts.issue_id, "held", detail, reported_before=before)
    if facts.refusal is not None:
        return _refused(facts.issue_id, facts.refusal)
    return None


def _refused(issue_id: str, why: str, warnings: tuple[str, ...] = ()) -> IssueOutcome:
    """Not sent because of the approval: said once (the message), logged with the error."""
    return IssueOutcome(issue_id, "refused", f"not sent: {why}", errors=(why,), warnings=warnings)


def _decide_and_send(
    project: Project,
    entry: ScheduleEntry,
    now: datetime,
    options: DispatchOptions,
    progress: Progress | None,
) -> IssueOutcome:
    facts = gather_due_facts(project, entry, options)
    instead = decide_before_sending(facts)
    if instead is not None:
        return instead
    assert entry.issue is not None  # a sound issue (decide_before_sending)
    if options.dry_run:
        return _planned(project, entry.issue, options, facts.warnings)
    return _send(project, entry.issue, now, options, progress, facts.warnings)


def _planned(
    project: Project, issue: Issue, options: DispatchOptions, warnings: tuple[str, ...]
) -> IssueOutcome:
    plan = plan_send(project, issue, SendOptions(transport=options.transport))
    return IssueOutcome(
        issue.id,
        "planned",
        f"would send {plan.to_send} of {plan.recipients} via {plan.transport}"
        f" ({plan.already_sent} already sent, {plan.suppressed} suppressed)",
        {"to_send": plan.to_send, "already_sent": plan.already_sent},
        warnings=warnings + plan.warnings,
    )


def _send(
    project: Project,
    issue: Issue,
    now: datetime,
    options: DispatchOptions,
    progress: Progress | None,
    warnings: tuple[str, ...],
) -> IssueOutcome:
    """Send through the send run (which checks the approval again, after rendering)."""

    def report(step: SendProgress) -> None:
        if progress is not None:
            progress(issue.id, step.done, step.total)

    # The run's clock says it is `now` (`--now`), so daily caps count from then.
    clock = ShiftedClock(now.timestamp() - time.time())
    try:
        send_options = SendOptions(transport=options.transport, message_date=now)
        result = send_issue(
            project, issue, send_options, progress=report if progress else None, clock=clock
        )
    except Interrupted as stopped:
        message = str(stopped).replace(RUN_AGAIN, "the next dispatch carries on")
        return IssueOutcome(issue.id, "interrupted", message, signum=stopped.signum)
    except ContentError as error:
        # A template that does not render, or a link that cannot be signed: located.
        errors = tuple(str(p) for p in error.problems if p.is_error)
        message = f"not sent: {len(errors)} error(s) in the content"
        return IssueOutcome(issue.id, "invalid", message, errors=errors, warnings=warnings)
    except (NotApproved, RenderingChanged) as error:  # changed since the check above
        return _refused(issue.id, str(error), warnings)
    except NewsletterError as error:
        # A transport that cannot work, a rejected key: say so, keep going with other issues.
        return IssueOutcome(
            issue.id, "failed", f"not sent: {error}", errors=(str(error),), warnings=warnings
        )
    finished = read_summary(project.settings.ledger_path, issue.id)
    cap = (
        cap_reached_line(result.daily_cap, project.settings.zone, clock.time())
        if result.daily_cap is not None
        else None
    )
    sent = SentFacts(result, finished is not None and finished.complete, cap, warnings)
    return outcome_of_send(sent)


@dataclass(frozen=True)
class SentFacts:
    """What a send run did for one issue, and what the ledger says after it."""

    result: SendResult
    finished: bool  # nobody left to send to, now or later
    cap_line: str | None  # the daily cap stopped it: when it carries on
    warnings: tuple[str, ...] = ()


def outcome_of_send(facts: SentFacts) -> IssueOutcome:
    """The outcome of a send run, from its facts alone (reads nothing)."""
    result, warnings = facts.result, facts.warnings
    issue_id, counts = result.issue_id, result.counts()
    message = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
    details = tuple(f"{f.email}: {f.detail}" for f in result.failures[:5])
    if facts.finished:
        return IssueOutcome(
            issue_id,
            "sent",
            f"finished: {message or 'nothing to send'}{_attention_hint(issue_id, result)}",
            counts,
            details if result.unknown or result.gave_up else (),
            warnings=warnings,
        )
    if facts.cap_line is not None:
        # Not a failure: the next dispatch after the window has room carries on.
        text = f"{message or 'nothing sent'}; {facts.cap_line}"
        return IssueOutcome(issue_id, "incomplete", text, counts, warnings=warnings)
    if result.sent == 0 and result.failed_temporary:
        # Nothing got through at all (relay down, refused, rate-limited): a failed run, so
        # cron mail or a failed systemd unit tells someone, though the next tick tries again.
        return IssueOutcome(
            issue_id,
            "failed",
            f"nothing delivered ({message}); the next dispatch tries again",
            counts,
            details or (f"{result.failed_temporary} deliveries failed temporarily",),
            warnings=warnings,
        )
    text = f"{message or 'nothing sent'}; the rest will be retried by the next dispatch"
    return IssueOutcome(issue_id, "incomplete", text, counts, warnings=warnings)


def _attention_hint(issue_id: str, result: SendResult) -> str:
    """What to do about people left in doubt, who no automatic run will send to again."""
    hints = []
    if result.unknown:
        hints.append(
            f"{result.unknown} unknown (the relay never confirmed them; "
            f"`newsletter retry {issue_id} --unknown` sends them again)"
        )
    if result.gave_up:
        hints.append(
            f"{result.gave_up} given up on after retry.max_total_attempts "
            f"(`newsletter retry {issue_id}` tries them again)"
        )
    return "; " + "; ".join(hints) if hints else ""
