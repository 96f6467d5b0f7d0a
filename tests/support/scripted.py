"""Answers a test queues on a fake server: each given `times` times, oldest first.

Shared by the fakes of the HTTP providers, Microsoft identity, Graph and
GOV.UK Notify, whose handler threads take the next answer while the test
thread may queue more.
"""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar


class Counted(Protocol):
    times: int


A = TypeVar("A", bound=Counted)


class Script(Generic[A]):
    """A thread-safe queue of scripted answers, each used `times` times."""

    def __init__(self) -> None:
        self._queued: list[A] = []
        self._lock = threading.Lock()

    def add(self, answer: A) -> None:
        with self._lock:
            self._queued.append(answer)

    def next(self) -> A | None:
        """The answer to give now, or None when nothing is scripted (answer normally)."""
        with self._lock:
            if not self._queued:
                return None
            answer = self._queued[0]
            answer.times -= 1
            if answer.times <= 0:
                self._queued.pop(0)
            return answer
