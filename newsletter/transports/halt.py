"""Stopping a run on a fatal error without losing what was already handed over.

A rejected password or API key must stop the run with a clear message rather
than mark thousands of people as failed. But if some messages in the same
batch were already accepted, raising at once would lose their results, and
the ledger would send them again. So the batch returns what happened (the
rest `failed-temporary`) and the error is raised at the start of the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.errors import DeliveryError
from newsletter.transports.base import DeliveryResult, OutgoingMessage


class Halt:
    """Remembers a fatal `DeliveryError` until it can be raised without losing results."""

    def __init__(self) -> None:
        self.error: DeliveryError | None = None

    def check(self) -> None:
        """Raise the remembered error, if any, before anything else is sent."""
        if self.error is not None:
            raise self.error

    def stop(
        self,
        error: DeliveryError,
        done: list[DeliveryResult],
        remaining: Sequence[OutgoingMessage],
    ) -> list[DeliveryResult]:
        """Raise `error` now if nothing was handed over in this batch, else defer it."""
        if not any(result.ok for result in done):
            raise error
        self.error = error
        return done + [
            DeliveryResult(m.recipient, m.message_id, "failed-temporary", str(error))
            for m in remaining
        ]
