"""Sending caps (per second, minute and hour), back-off after a failure, and the clock.

The clock is a small object so tests can hand in one that moves only when
asked, and never really sleep. A relay such as Microsoft 365 allows 30
messages a minute; a provider may allow 10 a second: both caps are kept.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from typing import Protocol

# Waits shorter than this are rounding errors; waiting for them could spin forever
# on a clock whose float cannot represent so small a step.
_EPSILON = 1e-6


class Clock(Protocol):
    """Where time comes from: wall time (seconds since the epoch) and sleeping."""

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ShiftedClock(SystemClock):
    """The real clock moved by a fixed amount: `dispatch --now` runs as though it were then.

    Only what is stamped and compared moves (the ledger's send times, which
    daily caps count, and token expiry); sleeping still takes real time.
    """

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


class RateLimiter:
    """Blocks `acquire` until sending one more message stays within every cap.

    `per_second` is a token bucket (bursts of up to one second's worth);
    `per_minute`/`per_hour` are sliding windows over the times of recent sends.
    None (or 0) means no cap at that scale. Safe to share between threads.
    """

    def __init__(
        self,
        clock: Clock,
        per_second: float | None = None,
        per_minute: int | None = None,
        per_hour: int | None = None,
    ) -> None:
        self.clock = clock
        self.per_second = per_second or None
        self.windows = [
            (limit, period) for limit, period in ((per_minute, 60.0), (per_hour, 3600.0)) if limit
        ]
        self._sent: list[deque[float]] = [deque() for _ in self.windows]
        self._capacity = max(1.0, self.per_second or 1.0)
        self._tokens = self._capacity
        self._last = clock.time()
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self.per_second is None and not self.windows

    def describe(self) -> str:
        """The caps in words, for the plan and the log."""
        parts = []
        if self.per_second:
            parts.append(f"{self.per_second:g} a second")
        for limit, period in self.windows:
            parts.append(f"{limit} a {'minute' if period == 60 else 'hour'}")
        return ", ".join(parts) if parts else "no limit"

    def _wait_needed(self, now: float) -> float:
        wait = 0.0
        if self.per_second:
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            if self._tokens < 1 - _EPSILON:
                wait = (1 - self._tokens) / self.per_second
        for (limit, period), sent in zip(self.windows, self._sent, strict=True):
            while sent and sent[0] + period <= now + _EPSILON:
                sent.popleft()
            if len(sent) >= limit:
                wait = max(wait, sent[0] + period - now)
        return wait

    def acquire(self) -> None:
        """Wait (on the clock) until one message may go, then count it."""
        if self.unlimited:
            return
        while True:
            with self._lock:
                now = self.clock.time()
                wait = self._wait_needed(now)
                if wait <= 0:
                    if self.per_second:
                        self._tokens = max(0.0, self._tokens - 1)
                    for sent in self._sent:
                        sent.append(now)
                    return
            self.clock.sleep(wait)


def backoff_delay(
    attempt: int, base: float, cap: float, jitter: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt `attempt` (1 for the first): `base` doubled each time.

    Never more than `cap`. With `jitter`, "equal jitter": half the wait is
    fixed and half random, so messages that failed together are not all
    tried again at the same moment.
    """
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay if jitter is None else delay / 2 + jitter.uniform(0, delay / 2)
