"""A clock for tests that moves only when told to or when someone sleeps on it.

It fits `newsletter.core.ratelimit.Clock` (time() and sleep()), so transports,
token providers and the local fake servers can share one: sleeping through a
provider's Retry-After moves the same time a token expires on.
"""

from __future__ import annotations

import threading


class FakeClock:
    """Time moves only when someone sleeps or a test calls `advance`; every sleep is remembered."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
