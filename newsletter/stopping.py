"""Stopping a run cleanly when asked to: SIGTERM (what `systemctl stop` sends) or Ctrl-C.

Python turns Ctrl-C (SIGINT) into `KeyboardInterrupt` in the main thread;
SIGTERM would kill the process on the spot, leaving the messages in flight
unrecorded (so the next run sends them again). While a run is going,
`stop_on_sigterm` makes SIGTERM raise `Terminated` in the main thread the
same way, so both unwind through the run's clean-up: stop claiming, let the
connections finish and record what they are sending, give back the rest.
`signals_held` keeps a second signal from interrupting that clean-up.

The run then raises `Interrupted`, which says how many were sent and carries
the exit code a shell expects: 128 + the signal's number (130 for Ctrl-C,
143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from newsletter.errors import NewsletterError

RUN_AGAIN = "run the same command again to continue"


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread, as Ctrl-C raises KeyboardInterrupt.

    A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Interrupted(NewsletterError):
    """A run stopped cleanly on a signal; the message says what was done and how to go on."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_of(stop: BaseException) -> int:
    """The signal a `KeyboardInterrupt` or `Terminated` stands for."""
    return stop.signum if isinstance(stop, Terminated) else int(signal.SIGINT)


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` in the main thread.

    Outside the main thread (where Python cannot set handlers) it does nothing.
    Nested blocks are fine: the handler is the same.
    """
    if not _in_main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM are noted (in the list yielded), not acted on.

    For finishing what is in flight: a second Ctrl-C must not leave rows half-recorded.
    """
    noted: list[int] = []
    if not _in_main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {number: signal.signal(number, note) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
