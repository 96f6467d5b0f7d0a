"""Stopping a run cleanly when asked to: SIGTERM (what `systemctl stop` sends) or Ctrl-C.

Python turns Ctrl-C (SIGINT) into `KeyboardInterrupt` in the main thread;
SIGTERM would kill the process on the spot, leaving the messages in flight
unrecorded (so the next run sends them again). While a run is going, SIGTERM
raises `Terminated` in the main thread the same way (`StopSignals`), so both
unwind through the run's clean-up: stop claiming, let the connections finish
and record what they are sending, give back the rest. Short critical sections (a claim, giving rows back) and the
clean-up itself are never cut short: a signal there waits for them.

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

RUN_AGAIN = "run the same command again to continue"


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread, as Ctrl-C raises KeyboardInterrupt.

    A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_of(stop: BaseException) -> int:
    """The signal a `KeyboardInterrupt` or `Terminated` stands for."""
    return stop.signum if isinstance(stop, Terminated) else int(signal.SIGINT)


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _stop(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


class StopSignals:
    """SIGINT and SIGTERM as exceptions in the main thread, held back in critical sections.

    While `installed`, Ctrl-C raises `KeyboardInterrupt` and SIGTERM raises
    `Terminated`, wherever the main thread is (waiting for a worker, sleeping
    through a back-off). Inside a `critical` block (a claim and the building
    of its messages, giving rows back) a signal waits until the block ends,
    so no row is left claimed by nobody. Inside `held` (the final clean-up) it
    is only noted. Outside the main thread, where Python cannot handle
    signals, all of this does nothing.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._depth = 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            if self.pending is None:
                self.pending = signum
            return
        raise _stop(signum)

    @contextmanager
    def installed(self) -> Iterator[None]:
        if not _in_main_thread():
            yield
            return
        previous = {n: signal.signal(n, self._handle) for n in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A signal during the block is acted on when it ends (unless it ends with an error)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self.pending is not None:
            signum, self.pending = self.pending, None
            raise _stop(signum)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A signal during the block is only noted, in `pending`: for finishing what is in flight."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
