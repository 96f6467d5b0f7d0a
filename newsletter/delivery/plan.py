"""What `newsletter send` would do, worked out without sending or writing anything.

The dry run (`send` without `--send`) and `dispatch --dry-run` print this
plan: who is in the audience, in which variant, who is suppressed or merged,
how many the ledger says are already sent, and the transport and rate a
real run would use, with the route in words and what it still needs
(`transports.route_of`)),
and a warning for each setting that transport still needs (a placeholder
host, a missing API key): the dry run is where a new team finds out, before
`--send` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from newsletter.audience.lists import AudienceCounts, iter_audience
from newsletter.content.issue import Issue
from newsletter.core.project import Project
from newsletter.core.ratelimit import SystemClock
from newsletter.delivery.send_options import SendOptions
from newsletter.ledger.deliveries import open_ledger_if_exists
from newsletter.transports.lookup import route_of, setup_problems


@dataclass(frozen=True)
class VariantPlan:
    key: str
    label: str
    section_ids: tuple[str, ...]
    recipients: int


@dataclass(frozen=True)
class SendPlan:
    """What `send` would do, worked out without writing anything."""

    issue_id: str
    subject: str
    transport: str
    route: str  # e.g. "Microsoft 365 SMTP with OAuth2 (...); missing NEWSLETTER_OAUTH_..."
    rate: str
    concurrency: int
    limit: int | None
    recipients: int
    variants: tuple[VariantPlan, ...]
    per_segment: dict[str, int]
    duplicates_merged: int
    suppressed: int
    invalid: int
    already_sent: int
    ledger_path: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def to_send(self) -> int:
        remaining = max(0, self.recipients - self.already_sent)
        return remaining if self.limit is None else min(self.limit, remaining)

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.issue_id,
            "subject": self.subject,
            "transport": self.transport,
            "route": self.route,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "limit": self.limit,
            "recipients": self.recipients,
            "already_sent": self.already_sent,
            "to_send": self.to_send,
            "duplicates_merged": self.duplicates_merged,
            "suppressed": self.suppressed,
            "invalid": self.invalid,
            "variants": [
                {
                    "key": v.key,
                    "label": v.label,
                    "sections": list(v.section_ids),
                    "recipients": v.recipients,
                }
                for v in self.variants
            ],
            "per_segment": self.per_segment,
            "ledger": self.ledger_path,
            "warnings": list(self.warnings),
        }


def plan_send(project: Project, issue: Issue, options: SendOptions | None = None) -> SendPlan:
    """Work out who would get what, how, and how fast. Writes nothing, not even a ledger file."""
    options = options or SendOptions()
    settings = project.settings
    counts = AudienceCounts()
    for _ in iter_audience(project.audience_source(), issue, counts):
        pass
    already_sent = 0
    ledger = open_ledger_if_exists(settings.ledger_path)
    if ledger is not None:
        with ledger:
            already_sent = ledger.count_states(issue.id)["sent"]
    transport = options.transport_name(settings)
    return SendPlan(
        issue_id=issue.id,
        subject=issue.subject,
        transport=transport,
        route=route_of(settings, options.transport).summary,
        rate=options.rate_limiter(settings, SystemClock()).describe(),
        concurrency=options.workers(settings),
        limit=options.limit,
        recipients=counts.recipients,
        variants=tuple(
            VariantPlan(key, counts.variants[key].label, counts.variants[key].section_ids, n)
            for key, n in sorted(counts.per_variant.items())
        ),
        per_segment=dict(sorted(counts.per_segment.items())),
        duplicates_merged=counts.duplicates_merged,
        suppressed=counts.suppressed,
        invalid=counts.invalid,
        already_sent=already_sent,
        ledger_path=str(settings.ledger_path),
        warnings=tuple(p.message for p in setup_problems(settings, transport)),
    )
