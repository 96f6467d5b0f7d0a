"""The `report` command's library: what the ledger says about one issue's delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from newsletter.errors import NewsletterError
from newsletter.ledger import DeliverySummary, State, open_ledger_if_exists
from newsletter.project import Project


@dataclass(frozen=True)
class ReportedFailure:
    email: str
    state: State
    attempts: int
    detail: str


@dataclass(frozen=True)
class DeliveryReport:
    """What the ledger says about one issue: who got it, who did not, and why."""

    summary: DeliverySummary
    per_segment: dict[str, dict[str, int]]
    failures: tuple[ReportedFailure, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.summary.issue_id,
            "started_at": self.summary.started_at,
            "finished_at": self.summary.finished_at,
            "complete": self.summary.complete,
            "counts": dict(self.summary.counts),
            "needs_attention": self.summary.needs_attention,
            "per_segment": self.per_segment,
            "failures": [f.__dict__ for f in self.failures],
        }

    def hints(self) -> list[str]:
        """What the team can do about the people no automatic run will send to again."""
        return attention_hints(self.summary)


# The rows the report lists one by one, with their last error.
REPORTED_STATES: tuple[State, ...] = (
    "unknown",
    "gave-up",
    "failed-permanent",
    "failed-temporary",
    "sending",
)


def attention_hints(summary: DeliverySummary) -> list[str]:
    """One line per kind of person left in doubt: how many, why, and the command that resends."""
    issue_id = summary.issue_id
    waiting = summary.needs_attention
    hints = []
    if waiting.get("unknown"):
        hints.append(
            f"{waiting['unknown']} unknown: the whole message was handed over and the relay "
            "never confirmed it, so they may already have it. Nothing resends them unless "
            f"you run `newsletter retry {issue_id} --unknown`"
        )
    if waiting.get("gave-up"):
        hints.append(
            f"{waiting['gave-up']} given up on after retry.max_total_attempts tries in all; "
            f"`newsletter retry {issue_id}` tries them once more"
        )
    return hints


def delivery_report(project: Project, issue: str) -> DeliveryReport:
    """Read an issue's delivery from the ledger (`issue` is its id, or its file)."""
    ledger = open_ledger_if_exists(project.settings.ledger_path)
    if ledger is None:
        raise NewsletterError(
            f"nothing has been sent yet: there is no delivery ledger at {project.settings.ledger_path}"
        )
    with ledger:
        issue_id = issue if issue in ledger.issue_ids() else project.load_issue(issue).id
        summary = ledger.summary(issue_id)
        if not summary.started:
            raise NewsletterError(f"the ledger has no deliveries of {issue_id} yet")
        failures = tuple(
            ReportedFailure(row.email, row.state, row.attempts, row.last_error)
            for row in ledger.rows(issue_id, REPORTED_STATES)
        )
        return DeliveryReport(summary, ledger.count_segments(issue_id), failures)
