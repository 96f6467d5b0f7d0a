"""Stopping a run on a fatal error without losing what was already handed over.

A rejected password or API key, or a refusal of the message itself, must
stop the run with a clear message rather than mark thousands of people as
failed. But if some messages in the same batch were already handed over,
raising at once would lose their results, and the ledger would send them
again. So the batch returns what happened, the rest marked `halted` (not
handed over, with the error as detail, so the run gives them back and stops),
and the error is raised at the start of the next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from newsletter.core.errors import DeliveryError
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
        """Raise `error` now if this batch has no results yet, else return them and defer it."""
        if not done:
            raise error
        self.error = error
        return done + halted(remaining, str(error))

    def remember(self, error: DeliveryError) -> None:
        """Raise `error` at the start of the next batch (this one's results are being returned)."""
        self.error = error


def halted(messages: Sequence[OutgoingMessage], detail: str) -> list[DeliveryResult]:
    """Results for messages not handed over because the transport stopped: `detail` says why."""
    return [
        DeliveryResult(m.recipient, m.message_id, "failed-temporary", detail, halted=True)
        for m in messages
    ]


class RestLater(Exception):
    """Raised while sending one message: it and the rest of the batch go back as temporary.

    For a server that is unreachable or asks us to slow down: every later
    message would meet the same answer, so none is tried, and `wait` (seconds,
    or None for the usual back-off) tells the run how long to hold off.
    """

    def __init__(self, detail: str, wait: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.wait = wait


def send_each(
    halt: Halt,
    messages: Sequence[OutgoingMessage],
    send_one: Callable[[OutgoingMessage], DeliveryResult],
) -> list[DeliveryResult]:
    """Send a batch one message at a time: one result per message, in order.

    `send_one` may raise `RestLater` (the rest go back as temporary) or
    `DeliveryError` (the run stops, without losing what was handed over).
    """
    halt.check()
    results: list[DeliveryResult] = []
    for index, outgoing in enumerate(messages):
        try:
            results.append(send_one(outgoing))
        except RestLater as later:
            results += [
                DeliveryResult(
                    m.recipient, m.message_id, "failed-temporary", later.detail, None, later.wait
                )
                for m in messages[index:]
            ]
            break
        except DeliveryError as error:
            return halt.stop(error, results, messages[index:])
    return results
