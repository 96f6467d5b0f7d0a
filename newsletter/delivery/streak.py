"""The circuit breaker: identical recipient refusals in a row stop the run, suppressing nobody.

One relay answer repeated for `BREAKER_STREAK` different people is the
relay's, the sender's or the message's problem, not theirs (the delivery
protocol in `ledger/deliveries.py`).
"""

from __future__ import annotations

import re

from newsletter.core.errors import NewsletterError
from newsletter.ledger.deliveries import DeliveryRow
from newsletter.transports.base import DeliveryResult

# Identical refusals in a row that stop the run.
BREAKER_STREAK = 5


class Streak:
    """The circuit breaker: identical recipient refusals in a row, held back until the streak ends.

    Refusals are held (not recorded, nobody suppressed) while each is the
    same answer as the last; an answer of another kind ends the streak and
    they are recorded as the individual refusals they were. `BREAKER_STREAK`
    in a row trips it: the run stops and the held rows are given back.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.answer: str | None = None
        self.held: list[tuple[DeliveryRow, DeliveryResult]] = []
        self.tripped = False

    def add(
        self, row: DeliveryRow, result: DeliveryResult
    ) -> tuple[list[tuple[DeliveryRow, DeliveryResult]], bool]:
        """Hold this refusal: the refusals of a streak it ended (to record), and whether it tripped."""
        answer = same_answer(row, result)
        ended: list[tuple[DeliveryRow, DeliveryResult]] = []
        if answer != self.answer:
            ended, self.held, self.answer = self.held, [], answer
        self.held.append((row, result))
        self.tripped = len(self.held) >= self.limit
        return ended, self.tripped

    def end(self) -> list[tuple[DeliveryRow, DeliveryResult]]:
        """Another kind of result came: the held refusals were individual ones (to record)."""
        ended, self.held, self.answer = self.held, [], None
        return ended

    def trip(self) -> tuple[list[DeliveryRow], NewsletterError]:
        """The rows to give back, and the error that stops the run."""
        rows = [row for row, _ in self.held]
        detail = self.held[0][1].detail if self.held else ""
        self.held = []
        return rows, NewsletterError(
            f"{self.limit} recipients in a row were refused with the same answer ({detail}); "
            "that looks like a problem with the relay, the sender or the message rather than "
            f"with {self.limit} people, so the run stopped and nobody was marked as failed or "
            f"suppressed. If they really are {self.limit} bad addresses, take them off the "
            "list (`newsletter unsubscribe ADDRESS`); then run the same command again"
        )


def same_answer(row: DeliveryRow, result: DeliveryResult) -> str:
    """A refusal's text with the recipient's address taken out, to compare answers."""
    return re.sub(re.escape(row.email), "<recipient>", result.detail, flags=re.IGNORECASE)
