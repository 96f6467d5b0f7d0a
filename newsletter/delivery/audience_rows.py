"""The audience into the ledger: everyone an issue goes to, as rows, before anyone is claimed.

New people are added `pending` with their Message-ID, people on the
suppression list `suppressed` (so the report can say why), a few hundred per
transaction; someone already in the ledger keeps their row (`Ledger.add_recipients`).
"""

from __future__ import annotations

from newsletter.audience.lists import (
    AudienceCounts,
    Recipient,
    iter_audience,
    segments_of,
)
from newsletter.audience.suppression import SuppressedAddress
from newsletter.content.issue import Issue
from newsletter.core.project import Project
from newsletter.ledger.deliveries import Ledger, NewRecipient
from newsletter.render.message import message_id_for, sender_domain

INSERT_BATCH = 500


def stream_audience_into_ledger(
    project: Project, issue: Issue, ledger: Ledger, counts: AudienceCounts | None = None
) -> AudienceCounts:
    """Add everyone in the issue's audience to the ledger (new people pending), in batches."""
    counts = counts if counts is not None else AudienceCounts()
    source = project.audience_source()
    segments = segments_of(source)
    domain = sender_domain(project.settings)
    batch: list[NewRecipient] = []

    def suppressed(recipient: Recipient, why: SuppressedAddress) -> None:
        batch.append(NewRecipient(recipient, None, segments(recipient), None, why.reason))

    for recipient, variant in iter_audience(source, issue, counts, suppressed):
        message_id = message_id_for(
            issue.id, recipient.email, domain, project.settings.unsubscribe_secret
        )
        batch.append(NewRecipient(recipient, variant, segments(recipient), message_id))
        if len(batch) >= INSERT_BATCH:
            ledger.add_recipients(issue.id, batch)
            batch.clear()
    if batch:
        ledger.add_recipients(issue.id, batch)
    return counts
