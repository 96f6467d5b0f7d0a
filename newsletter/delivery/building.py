"""Claimed rows into the messages a transport hands over, one chunk at a time.

Each sending worker builds the chunk it is about to send, in its own
thread: building (a fraction of a millisecond a message) then never waits
for, or holds up, another thread's network reply, and no more than a chunk
of built messages is held per connection.
"""

from __future__ import annotations

from datetime import UTC, datetime

from newsletter.content.issue import Issue
from newsletter.core.settings import Settings
from newsletter.ledger.deliveries import DeliveryRow
from newsletter.render.message import MessageBuilder, return_path_for
from newsletter.render.variants import Renderer
from newsletter.transports.base import OutgoingMessage, ProviderBody


class ChunkBuilder:
    """One worker's builder: the run's rendered variants, its own encoded-body cache.

    `message_date` fixes the Date header (tests); otherwise it is the time
    each chunk is built.
    """

    def __init__(
        self,
        settings: Settings,
        issue: Issue,
        renderer: Renderer,
        provider_body: ProviderBody | None,
        message_date: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.issue = issue
        self.renderer = renderer
        self.provider_body = provider_body
        self.message_date = message_date
        self.builder = MessageBuilder(settings, issue)

    def build(self, rows: list[DeliveryRow]) -> list[OutgoingMessage]:
        self.builder.redate(self.message_date or datetime.now(UTC))
        return [self._message(row) for row in rows]

    def _message(self, row: DeliveryRow) -> OutgoingMessage:
        recipient, variant = row.recipient(), row.variant()
        email = self.renderer.personalise(variant, recipient)
        own_body = self.provider_body
        return OutgoingMessage(
            recipient.email,
            self.builder.message_id(recipient),
            self.builder.build(recipient, email),
            own_body.render(variant, recipient) if own_body is not None else None,
            return_path_for(self.settings, self.issue.id, recipient.email),
            dot_free=True,  # MessageBuilder starts no line with "."
        )
