"""A transport that keeps messages in memory, for unit tests of the dispatcher.

End-to-end tests still go through a real SMTP server; this one exists so the
ledger and retry logic can be tested quickly and with precise failures.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from newsletter.transports.base import DeliveryResult, DeliveryStatus, OutgoingMessage


class MemoryTransport:
    """Records messages in `sent`; `failures` maps an address (lower case) to outcomes.

    Each entry of a failure list is used once, in order, so `["failed-temporary"]`
    fails the first attempt and lets the second through.
    """

    name = "memory"
    sends_batch_in_one_request = False

    def __init__(
        self,
        failures: Mapping[str, Sequence[DeliveryStatus]] | None = None,
        batch_size: int = 50,
        sent: list[OutgoingMessage] | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.sent: list[OutgoingMessage] = sent if sent is not None else []
        self._failures = {k.lower(): list(v) for k, v in (failures or {}).items()}
        self._lock = threading.Lock()
        self.closed = False

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        results = []
        with self._lock:
            for outgoing in messages:
                planned = self._failures.get(outgoing.recipient.lower())
                status: DeliveryStatus = planned.pop(0) if planned else "sent"
                if status == "sent":
                    self.sent.append(outgoing)
                    provider_id = f"memory-{len(self.sent)}"
                    results.append(
                        DeliveryResult(
                            outgoing.recipient, outgoing.message_id, "sent", "", provider_id
                        )
                    )
                else:
                    code = (
                        "451 try again later"
                        if status == "failed-temporary"
                        else "550 no such user"
                    )
                    results.append(
                        DeliveryResult(outgoing.recipient, outgoing.message_id, status, code)
                    )
        return results

    def close(self) -> None:
        self.closed = True
