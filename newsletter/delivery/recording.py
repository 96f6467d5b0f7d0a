"""Recording a send run's results: each chunk's answers into the ledger, counted as they go.

The workers of `send.py` call `Recorder.record` after each chunk: sent,
refused, unknown and temporary failures (with their back-off) are written in
one transaction; a streak of identical refusals is held by the circuit
breaker (`streak.py`); a hard bounce puts the address on the suppression
list; people suppressed since the run started are left out before the
hand-over. The rules are the delivery protocol in `ledger/deliveries.py`.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from newsletter.audience.suppression import add_suppression
from newsletter.core.errors import DeliveryError, Interrupted, LedgerError, NewsletterError
from newsletter.core.ratelimit import Clock, RateLimiter, backoff_delay
from newsletter.core.settings import Settings
from newsletter.delivery.send_options import Failure, SendProgress
from newsletter.delivery.stopping import RUN_AGAIN, signal_name
from newsletter.delivery.streak import BREAKER_STREAK, Streak
from newsletter.delivery.suppression_watch import SuppressionWatch
from newsletter.ledger.deliveries import DeliveryRow, Ledger, Outcome
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Transport


@dataclass(frozen=True)
class TallyDelta:
    """A `Tally`'s counts without its lock, to travel between processes."""

    sent: int
    permanent: int
    unknown: int
    gave_up: int
    out_of_tries: int
    unrecorded: int
    failures: tuple[Failure, ...]
    hard_bounced: tuple[str, ...]


@dataclass
class Tally:
    """What the workers have recorded so far, shared with the main thread (under `lock`)."""

    sent: int = 0
    permanent: int = 0
    unknown: int = 0
    gave_up: int = 0  # for good (retry.max_total_attempts)
    out_of_tries: int = 0  # for this run (retry.max_attempts)
    unrecorded: int = 0  # handed over, but the ledger could not be written
    failures: list[Failure] = field(default_factory=list)
    hard_bounced: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, row: DeliveryRow, outcome: Outcome) -> None:
        """Count one recorded outcome (the caller holds `lock`)."""
        if outcome.state == "sent":
            self.sent += 1
            return
        if outcome.state == "failed-permanent":
            self.permanent += 1
        elif outcome.state == "unknown":
            self.unknown += 1
        elif outcome.state == "gave-up":
            self.gave_up += 1
        elif outcome.next_attempt_at == 0.0:
            self.out_of_tries += 1
        else:
            return  # tried again later in this run
        self.failures.append(Failure(row.email, outcome.state, outcome.detail))

    def take(self) -> TallyDelta:
        """What was counted since the last `take`, which starts the counts afresh.

        A sending process (`sending_processes.py`) sends this to the main process.
        """
        with self.lock:
            delta = TallyDelta(
                self.sent,
                self.permanent,
                self.unknown,
                self.gave_up,
                self.out_of_tries,
                self.unrecorded,
                tuple(self.failures),
                tuple(self.hard_bounced),
            )
            self.sent = self.permanent = self.unknown = self.gave_up = 0
            self.out_of_tries = self.unrecorded = 0
            self.failures, self.hard_bounced = [], []
        return delta

    def add(self, delta: TallyDelta) -> None:
        """Add what a sending process counted."""
        with self.lock:
            self.sent += delta.sent
            self.permanent += delta.permanent
            self.unknown += delta.unknown
            self.gave_up += delta.gave_up
            self.out_of_tries += delta.out_of_tries
            self.unrecorded += delta.unrecorded
            self.failures += delta.failures
            self.hard_bounced += delta.hard_bounced

    def progress(self, total: int) -> SendProgress:
        with self.lock:
            failed = self.permanent + self.gave_up + self.out_of_tries
            done = self.sent + failed + self.unknown
            return SendProgress(done, total, self.sent, failed, self.unknown)


class Recorder:
    """Records what the transports answered, from the worker threads, one chunk at a time.

    Shared by the run's workers: `tally` (under its lock) is what the main
    thread reads; chunks are recorded one at a time (`record_lock`) so the
    circuit breaker sees results in order. Results the ledger failed to take
    wait in `unrecorded` for one more try as the run stops.
    """

    def __init__(
        self,
        ledger: Ledger,
        issue_id: str,
        settings: Settings,
        clock: Clock,
        rng: random.Random,
        suppressed_path: Path,
    ) -> None:
        self.ledger = ledger
        self.issue_id = issue_id
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.suppressed_path = suppressed_path
        self.suppressions = SuppressionWatch(suppressed_path)
        self.max_attempts = max(1, settings.retry.max_attempts)
        self.max_total_attempts = max(1, settings.retry.max_total_attempts)
        self.tally = Tally()
        self.streak = Streak(BREAKER_STREAK)
        self.record_lock = threading.Lock()
        self.unrecorded: list[list[tuple[DeliveryRow, DeliveryResult, Outcome]]] = []

    def leave_out_suppressed(
        self, rows: list[DeliveryRow], messages: list[OutgoingMessage]
    ) -> tuple[list[DeliveryRow], list[OutgoingMessage]]:
        """Record as `suppressed` whoever is on the suppression list now; the rest, to send."""
        keep: list[tuple[DeliveryRow, OutgoingMessage]] = []
        left_out: list[tuple[Outcome, str | None]] = []
        suppressed = self.suppressions.now()
        for row, message in zip(rows, messages, strict=True):
            suppression = suppressed.get(row.address_key)
            if suppression is None:
                keep.append((row, message))
            else:
                detail = f"suppressed: {suppression.reason} (while this issue was being sent)"
                left_out.append((Outcome(row.address_key, "suppressed", detail), None))
        if left_out:
            self.ledger.record(self.issue_id, left_out)
        return [row for row, _ in keep], [message for _, message in keep]

    def record(
        self, rows: list[DeliveryRow], delivered: list[DeliveryResult]
    ) -> BaseException | None:
        """Record one chunk's results (called from a worker thread); the error that stops the run.

        Halted results (the transport stopped) and a tripped streak are given
        back untouched; a streak of identical refusals is held until it ends.
        """
        stop: BaseException | None = None
        with self.record_lock:
            to_write: list[tuple[DeliveryRow, DeliveryResult]] = []
            give_back: list[DeliveryRow] = []
            for row, result in zip(rows, delivered, strict=True):
                if result.halted:
                    give_back.append(row)
                    stop = stop or DeliveryError(result.detail)
                elif result.status != "failed-permanent":
                    to_write += self.streak.end()
                    to_write.append((row, result))
                elif self.streak.tripped:
                    give_back.append(row)  # the run is stopping: nobody else is suppressed
                else:
                    ended, tripped_now = self.streak.add(row, result)
                    to_write += ended
                    if tripped_now:
                        tripped, error = self.streak.trip()
                        give_back += tripped
                        stop = stop or error
            try:
                self.write(to_write)
                if give_back:
                    self.ledger.release(self.issue_id, [row.address_key for row in give_back])
            except LedgerError as error:
                return error
        return stop

    def write(self, results: list[tuple[DeliveryRow, DeliveryResult]]) -> None:
        """Record results in one transaction; if the ledger fails, keep them for one more try."""
        if not results:
            return
        outcomes = [(row, result, self._outcome(row, result)) for row, result in results]
        try:
            self.write_outcomes(outcomes)
        except LedgerError:
            with self.tally.lock:
                self.tally.unrecorded += len(outcomes)
            self.unrecorded.append(outcomes)
            raise

    def write_outcomes(
        self,
        outcomes: list[tuple[DeliveryRow, DeliveryResult, Outcome]],
        *,
        retried: bool = False,
    ) -> None:
        self.ledger.record(
            self.issue_id,
            [(outcome, result.message_id) for _, result, outcome in outcomes],
            now=self.clock.time(),
        )
        with self.tally.lock:
            if retried:
                self.tally.unrecorded -= len(outcomes)
            for row, _, outcome in outcomes:
                self.tally.count(row, outcome)
        for row, result, outcome in outcomes:
            if outcome.state == "failed-permanent" and result.address_at_fault:
                self._suppress_if_hard_bounced(row)

    def _outcome(self, row: DeliveryRow, result: DeliveryResult) -> Outcome:
        """What to record for one result."""
        if result.status in ("sent", "failed-permanent", "unknown"):
            provider_id = result.provider_id if result.status == "sent" else None
            return Outcome(row.address_key, result.status, result.detail, provider_id)
        if row.attempts >= self.max_total_attempts:
            detail = (
                f"gave up after {row.attempts} attempts (retry.max_total_attempts): {result.detail}"
            )
            return Outcome(row.address_key, "gave-up", detail)
        if row.run_attempts >= self.max_attempts:
            return Outcome(row.address_key, "failed-temporary", result.detail, None, 0.0)
        retry = self.settings.retry
        with self.tally.lock:  # the jitter's generator is shared by the workers
            delay = backoff_delay(
                row.run_attempts, retry.base_delay_seconds, retry.max_delay_seconds, self.rng
            )
        wake = self.clock.time() + max(delay, result.retry_after or 0.0)
        return Outcome(row.address_key, "failed-temporary", result.detail, None, wake)

    def _suppress_if_hard_bounced(self, row: DeliveryRow) -> None:
        bounces = self.ledger.permanent_failures(row.address_key)
        if bounces >= self.settings.retry.hard_bounce_after and add_suppression(
            self.suppressed_path, row.email, "hard-bounce", date.today()
        ):
            with self.tally.lock:
                self.tally.hard_bounced.append(row.email)

    def interrupted(self, signum: int) -> Interrupted:
        with self.tally.lock:
            sent, unrecorded = self.tally.sent, self.tally.unrecorded
        lost = (
            f"; {unrecorded} more were sent but could not be recorded, so the next run may "
            "send them again"
            if unrecorded
            else ""
        )
        return Interrupted(
            f"stopped by {signal_name(signum)}: {sent} sent in this run and recorded{lost}; "
            f"nobody else was sent to. To go on, {RUN_AGAIN}",
            signum,
        )

    def ledger_failed(self, error: LedgerError) -> LedgerError:
        with self.tally.lock:
            sent, unrecorded = self.tally.sent, self.tally.unrecorded
        lost = (
            f"; {unrecorded} more were sent but could not be recorded, and the next run may "
            "send them again (with the same Message-ID)"
            if unrecorded
            else ""
        )
        return LedgerError(
            f"{error}. The run stopped after {sent} sent in this run{lost}; once that is put "
            f"right, {RUN_AGAIN}"
        )

    def send_chunk(
        self,
        transport: Transport,
        limiter: RateLimiter,
        rows: list[DeliveryRow],
        messages: list[OutgoingMessage],
    ) -> BaseException | None:
        """Hand one chunk to the transport and record the results; the error that stops the run.

        The rate limit is waited for first; then people suppressed since the
        run started are recorded `suppressed` and left out, and the rest are
        marked handed over (committed) before the transport is called: the
        order the delivery protocol sets. An exception before the results
        come back leaves the rows to be given back as unsent.
        """
        for _ in messages:
            limiter.acquire()
        rows, messages = self.leave_out_suppressed(rows, messages)
        if not messages:
            return None
        self.ledger.hand_over(self.issue_id, [row.address_key for row in rows])
        results = transport.send_batch(messages)
        if len(results) != len(messages):
            raise NewsletterError(
                f"the {transport.name} transport returned {len(results)} results "
                f"for {len(messages)} messages"
            )
        return self.record(rows, results)

    def record_what_is_held(self) -> None:
        """As the run stops: results the ledger failed to take, then an unfinished streak.

        First what was handed over: recording it is what keeps it from going
        twice. The refusals of a streak that did not trip were individual
        ones after all. A ledger that still fails raises `LedgerError`.
        """
        if self.unrecorded:
            self.ledger.make_room()
        while self.unrecorded:
            self.write_outcomes(self.unrecorded[0], retried=True)
            self.unrecorded.pop(0)
        if not self.streak.tripped:
            self.write(self.streak.end())
