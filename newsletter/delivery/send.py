"""Send an issue: drive a transport from the ledger, claim, send, record; exactly once per person.

A run has three stages, so that building messages overlaps the network:

1. the audience is streamed into the ledger as `pending` rows (suppressed
   people as `suppressed`), a few hundred per transaction;
2. the main thread claims rows in batches (committed as `sending` before any
   transport sees them), builds their messages, and queues them;
3. N worker threads, each with its own transport (its own connection), send
   the batches under a shared rate limit and record each chunk's results in
   one transaction, then tell the main thread they are done with the batch.

Before the ledger is touched, every worker's transport is opened and asked
to connect (`transports.base.Connects`), and every variant is rendered before
anyone is claimed: a relay that cannot be reached, a refused password or a
template that does not render stops the run with one message, and nobody is
marked failed or queued for a retry because of it.

Temporary failures are tried again within the run with exponential back-off
and jitter, up to `retry.max_attempts` times a run and `retry.max_total_attempts`
in all (then `gave-up`). Permanent refusals about the recipient are recorded
and, after `retry.hard_bounce_after` of them, the address goes on the
suppression list; but `BREAKER_STREAK` identical refusals in a row stop the
run and suppress nobody (the relay, the sender or the message is at fault,
not that many people). A message whose outcome is unknown (sent, never
confirmed) is recorded `unknown` and left alone. Refusals of the message
itself stop the run (the transport says so). The rules are in `ledger.py`.

SIGTERM and Ctrl-C stop the run cleanly (`stopping.py`): no more claims,
each connection finishes and records its chunk, the rest is given back, and
`Interrupted` says how many were sent. A ledger that cannot be written stops
the run before another message is handed over.

Nothing here holds more than a few batches of messages, so a list of 100,000
costs the same memory as a list of 100.

`rate.per_day` (`daily_cap.py`) stops a run cleanly once the last 24 hours
hold that many sends: the rest stay pending for the next run. A transport
whose provider draws the email from its own format (GOV.UK Notify) gets
each person's body attached to their message (`OutgoingMessage.provider_body`).

`SendOptions` carries what the person chose on the command line (transport,
concurrency, rate, limit) to the plan and the run.
"""

from __future__ import annotations

import queue
import random
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypedDict, Unpack

from jinja2 import TemplateError

from newsletter.audience.lists import (
    AudienceCounts,
    Recipient,
    Suppression,
    Variant,
    iter_audience,
    segments_of,
)
from newsletter.audience.suppression import add_suppression
from newsletter.content.issue import Issue
from newsletter.core.errors import ContentError, DeliveryError, NewsletterError
from newsletter.core.project import Project
from newsletter.core.ratelimit import Clock, RateLimiter, SystemClock, backoff_delay
from newsletter.core.settings import Settings
from newsletter.delivery.daily_cap import CapStatus, DailyAllowance
from newsletter.delivery.gate import check_before_opening, check_rendered
from newsletter.delivery.stopping import (
    RUN_AGAIN,
    Interrupted,
    StopSignals,
    Terminated,
    signal_name,
    signal_of,
)
from newsletter.delivery.suppression_watch import SuppressionWatch
from newsletter.ledger.deliveries import (
    CLAIMABLE,
    RETRYABLE,
    UNCONFIRMED,
    UNFINISHED,
    DeliveryRow,
    Ledger,
    LedgerError,
    NewRecipient,
    Outcome,
    State,
)
from newsletter.render.message import MessageBuilder, message_id_for, sender_domain
from newsletter.render.problems import render_error_problems
from newsletter.render.variants import Renderer
from newsletter.transports import provider_body, transport_opener, transport_type
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Transport, connect_now

# Rows claimed per transaction. Each claimed row becomes a built message held in
# memory until sent (~200 KB for the sample issue), so claims stay small.
CLAIM_BATCH = 20
INSERT_BATCH = 500
# A transport that sends a whole batch in one request is handed (and records)
# a batch at a time. One that delivers messages one by one is handed a few at
# a time, so results are recorded every few messages and a run killed
# mid-batch re-sends only a handful.
RECORD_EVERY = 5
# Identical refusals in a row that stop the run: one relay answer repeated for
# that many different people is the relay's, the sender's or the message's
# problem, not theirs.
BREAKER_STREAK = 5
TransportFactory = Callable[[], Transport]


@dataclass(frozen=True)
class SendOptions:
    """How to send, as chosen on the command line; None means "as newsletter.yaml says".

    `transport` names the transport; `concurrency` is how many connections
    send in parallel (default: the transport's own); `rate` is messages a
    second, 0 for no limit; `limit` caps the messages handed to the transport
    in this run, retries included. `message_date` fixes the messages' Date
    header (default: the moment each batch is built), for `dispatch --now`.
    """

    transport: str | None = None
    concurrency: int | None = None
    rate: float | None = None
    limit: int | None = None
    message_date: datetime | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise NewsletterError("--concurrency must be 1 or more")
        if self.rate is not None and self.rate < 0:
            raise NewsletterError("--rate must be 0 (no limit) or more")
        if self.limit is not None and self.limit < 0:
            raise NewsletterError("--limit must be 0 or more")

    def transport_name(self, settings: Settings) -> str:
        return self.transport or settings.transport

    def workers(self, settings: Settings) -> int:
        """Connections in parallel: `concurrency`, else the transport's default."""
        if self.concurrency is not None:
            return self.concurrency
        return transport_type(self.transport_name(settings)).default_concurrency(settings)

    def rate_limiter(self, settings: Settings, clock: Clock) -> RateLimiter:
        """The caps: `rate` a second (0: none) or the settings', plus their minute/hour caps."""
        per_second = settings.rate.per_second if self.rate is None else (self.rate or None)
        return RateLimiter(clock, per_second, settings.rate.per_minute, settings.rate.per_hour)


@dataclass(frozen=True)
class Failure:
    email: str
    state: State
    detail: str


@dataclass(frozen=True)
class SendProgress:
    """Passed to the progress callback after each recorded batch."""

    done: int
    total: int
    sent: int
    failed: int
    unknown: int = 0  # handed over, never confirmed: neither sent nor failed


Progress = Callable[[SendProgress], None]


@dataclass(frozen=True)
class SendResult:
    """What a run did. Counts of `sent`/`failed_permanent` are for this run only."""

    issue_id: str
    sent: int = 0
    failed_temporary: int = 0
    failed_permanent: int = 0
    suppressed: int = 0
    skipped_already_sent: int = 0
    recovered: int = 0
    unknown: int = 0  # this run's: sent, never confirmed
    gave_up: int = 0  # this run's: tried retry.max_total_attempts times in all
    unknown_in_ledger: int = 0  # everyone of the issue whose outcome is unknown
    hard_bounced: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    # Set when the run stopped at `rate.per_day` with people still to send to.
    daily_cap: CapStatus | None = None

    @property
    def ok(self) -> bool:
        """True when nobody in the run is left undelivered or in doubt."""
        return not (self.failed_permanent or self.failed_temporary or self.unknown or self.gave_up)

    def counts(self) -> dict[str, int]:
        """The run's numbers by name, as `--format json` and the dispatch log show them."""
        return {
            "sent": self.sent,
            "failed_temporary": self.failed_temporary,
            "failed_permanent": self.failed_permanent,
            "unknown": self.unknown,
            "gave_up": self.gave_up,
            "suppressed": self.suppressed,
            "skipped_already_sent": self.skipped_already_sent,
            "recovered": self.recovered,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.issue_id,
            **self.counts(),
            "unknown_in_ledger": self.unknown_in_ledger,
            "hard_bounced": list(self.hard_bounced),
            "failures": [f.__dict__ for f in self.failures],
            "daily_cap": None
            if self.daily_cap is None
            else {
                "per_day": self.daily_cap.per_day,
                "sent_in_24_hours": self.daily_cap.sent,
                "continues_after": None
                if self.daily_cap.reopens_at is None
                else datetime.fromtimestamp(self.daily_cap.reopens_at, UTC).isoformat(),
            },
        }


class RunHooks(TypedDict, total=False):
    """What a run reports to and works with besides the options; the last three are for tests.

    `progress` hears after each recorded batch; `clock` paces the rate limit
    and back-off; `rng` draws the back-off jitter; `transport_factory` opens
    each worker's transport (default: the one the options name).
    """

    progress: Progress | None
    clock: Clock | None
    rng: random.Random | None
    transport_factory: TransportFactory | None


def send_issue(
    project: Project, issue: Issue, options: SendOptions | None = None, **hooks: Unpack[RunHooks]
) -> SendResult:
    """Send the issue to everyone in its audience not yet sent to, recording each in the ledger.

    Resumable: run it again after a crash and it sends only to the people
    still unsent (rows a killed run left `sending` go again, same Message-ID).
    """
    run = _SendRun(project, issue, options or SendOptions(), hooks)
    return run.execute(refresh_audience=True, states=CLAIMABLE)


def retry_issue(
    project: Project, issue: Issue, options: SendOptions | None = None, **hooks: Unpack[RunHooks]
) -> SendResult:
    """Send the issue again to the people whose delivery failed temporarily (lists not re-read).

    Also tries, once, the people automatic runs gave up on (`gave-up`).
    People whose outcome is unknown are left alone: see `resend_unknown`.
    """
    run = _SendRun(project, issue, options or SendOptions(), hooks)
    return run.execute(refresh_audience=False, states=RETRYABLE)


def resend_unknown(
    project: Project, issue: Issue, options: SendOptions | None = None, **hooks: Unpack[RunHooks]
) -> SendResult:
    """Send the issue again, once, to the people whose outcome is unknown (`retry --unknown`).

    They may already have it: the relay took the whole message and never
    said so. Only the team can decide that a second copy is better than none.
    """
    run = _SendRun(project, issue, options or SendOptions(), hooks)
    return run.execute(refresh_audience=False, states=UNCONFIRMED)


def stream_audience_into_ledger(
    project: Project, issue: Issue, ledger: Ledger, counts: AudienceCounts | None = None
) -> AudienceCounts:
    """Add everyone in the issue's audience to the ledger (new people pending), in batches."""
    counts = counts if counts is not None else AudienceCounts()
    source = project.audience_source()
    segments = segments_of(source)
    domain = sender_domain(project.settings)
    batch: list[NewRecipient] = []

    def suppressed(recipient: Recipient, why: Suppression) -> None:
        batch.append(NewRecipient(recipient, None, segments(recipient), None, why.reason))

    for recipient, variant in iter_audience(source, issue, counts, suppressed):
        message_id = message_id_for(issue.id, recipient.email, domain)
        batch.append(NewRecipient(recipient, variant, segments(recipient), message_id))
        if len(batch) >= INSERT_BATCH:
            ledger.add_recipients(issue.id, batch)
            batch.clear()
    if batch:
        ledger.add_recipients(issue.id, batch)
    return counts


# --- the run -----------------------------------------------------------------

# A batch of claimed rows and their built messages, handed to a worker.
_Job = tuple[list[DeliveryRow], list[OutgoingMessage]]
# A worker's answer to each job: the rows it never sent, and the error that stopped it.
_Done = tuple[list[DeliveryRow], BaseException | None]


@dataclass
class _Tally:
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

    def progress(self, total: int) -> SendProgress:
        with self.lock:
            failed = self.permanent + self.gave_up + self.out_of_tries
            done = self.sent + failed + self.unknown
            return SendProgress(done, total, self.sent, failed, self.unknown)


class _Streak:
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
        answer = _same_answer(row, result)
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


def _same_answer(row: DeliveryRow, result: DeliveryResult) -> str:
    """A refusal's text with the recipient's address taken out, to compare answers."""
    return re.sub(re.escape(row.email), "<recipient>", result.detail, flags=re.IGNORECASE)


class _SendRun:
    """One run of `send` or `retry` over the ledger.

    The main thread claims rows, builds their messages and queues them
    (`_drive`); a worker thread per transport sends them and records each
    chunk (`_work`, `_record`); `_shutdown` stops the workers and gives back
    the rows never sent. Only the main thread touches `claimed`, `in_flight`
    and `error`; the workers share `tally` (under its lock) and record one at
    a time (`record_lock`), so the circuit breaker sees results in order.
    """

    def __init__(
        self,
        project: Project,
        issue: Issue,
        options: SendOptions,
        hooks: RunHooks,
    ) -> None:
        settings = project.settings
        # Before anything is opened or written: an issue that may not go stops here.
        check_before_opening(project, issue)
        self.project = project
        self.issue = issue
        self.settings = settings
        self.limit = options.limit
        self.message_date = options.message_date
        self.progress = hooks.get("progress")
        self.clock = hooks.get("clock") or SystemClock()
        self.rng = hooks.get("rng") or random.Random()
        self.workers = options.workers(settings)
        self.limiter = options.rate_limiter(settings, self.clock)
        # Made once for the run: the workers share what it holds (a token provider).
        self.open_transport = hooks.get("transport_factory") or transport_opener(
            settings, options.transport, clock=self.clock
        )
        self.provider_body = provider_body(settings, issue, options.transport)
        self.max_attempts = max(1, settings.retry.max_attempts)
        self.max_total_attempts = max(1, settings.retry.max_total_attempts)
        self.suppressed_path = project.paths.suppressed_path
        self.suppressions = SuppressionWatch(self.suppressed_path)
        self.domain = sender_domain(settings)
        self.renderer = Renderer(project, issue)
        self.run_id = uuid.uuid4().hex
        self.tally = _Tally()
        self.streak = _Streak(BREAKER_STREAK)
        self.record_lock = threading.Lock()
        # Results handed over but not yet written (the ledger failed): tried once more at the end.
        self.unrecorded: list[list[tuple[DeliveryRow, DeliveryResult, Outcome]]] = []
        self.jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=self.workers + 1)
        self.done: queue.Queue[_Done] = queue.Queue()
        self.stop = threading.Event()
        self.signals = StopSignals()
        self.claimed = 0
        self.in_flight = 0
        self.error: BaseException | None = None
        self.transports: list[Transport] = []  # opened, not yet handed to a worker
        try:
            self.ledger = Ledger(settings.ledger_path)
        except OSError as error:
            raise NewsletterError(
                f"cannot create the delivery ledger {settings.ledger_path} ({error.strerror}); "
                "make its folder writable, or set `ledger_path` in newsletter.yaml"
            ) from None
        self.daily = DailyAllowance(self.ledger, settings.rate.per_day, self.clock)

    def execute(self, *, refresh_audience: bool, states: Sequence[State]) -> SendResult:
        """Send to the rows in `states` (after adding the audience, if `refresh_audience`)."""
        try:
            with self.signals.installed():
                try:
                    return self._execute(refresh_audience, states)
                except (KeyboardInterrupt, Terminated) as stop:
                    raise self._interrupted(signal_of(stop)) from None
                except LedgerError as error:
                    raise self._ledger_failed(error) from error
        finally:
            for transport in self.transports:  # opened but never handed to a worker
                transport.close()
            self.ledger.close()

    def _execute(self, refresh_audience: bool, states: Sequence[State]) -> SendResult:
        ledger, issue_id = self.ledger, self.issue.id
        # Before the ledger is touched: a transport that cannot work stops the run here.
        self.transports = self._open_transports()
        ledger.start_issue(issue_id)
        if refresh_audience:
            stream_audience_into_ledger(self.project, self.issue, ledger)
        recovered = ledger.recover_interrupted(issue_id)
        before = ledger.count_states(issue_id)
        to_do = sum(before[s] for s in states)
        total = to_do if self.limit is None else min(self.limit, to_do)
        variants = self._render_variants(states)
        # After rendering, before the first message: exactly what was approved, or nothing.
        check_rendered(self.project, self.issue, self.renderer, variants)
        self._send_all(states, total)
        final = ledger.count_states(issue_id)
        unfinished = any(final[state] for state in UNFINISHED)
        if not unfinished:
            ledger.finish_issue(issue_id)
        tally = self.tally
        return SendResult(
            issue_id=issue_id,
            sent=tally.sent,
            failed_temporary=final["failed-temporary"],
            failed_permanent=tally.permanent,
            suppressed=final["suppressed"],
            skipped_already_sent=before["sent"],
            recovered=recovered,
            unknown=tally.unknown,
            gave_up=tally.gave_up,
            unknown_in_ledger=final["unknown"],
            hard_bounced=tuple(tally.hard_bounced),
            failures=tuple(tally.failures),
            daily_cap=self.daily.reached if unfinished else None,
        )

    def _interrupted(self, signum: int) -> Interrupted:
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

    def _ledger_failed(self, error: LedgerError) -> LedgerError:
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

    def _render_variants(self, states: Sequence[State]) -> list[Variant]:
        """Render every variant before anything is claimed, so a broken template stops the run.

        Every row is still where it was then; the error is a located ContentError.
        """
        variants = self.ledger.unsent_variants(self.issue.id, (*states, "sending"))
        try:
            for variant in variants:
                self.renderer.variant(variant)
        except TemplateError as error:
            raise ContentError(render_error_problems(error, self.issue.path)) from None
        return variants

    def _send_all(self, states: Sequence[State], total: int) -> None:
        transports, self.transports = self.transports, []  # the workers close them now
        threads = [
            threading.Thread(
                target=self._work, args=(transport,), name=f"newsletter-send-{i}", daemon=True
            )
            for i, transport in enumerate(transports)
        ]
        claim_size = max(
            [CLAIM_BATCH, *(t.batch_size for t in transports if t.sends_batch_in_one_request)]
        )
        for thread in threads:
            thread.start()
        stopped: BaseException | None = None
        try:
            self._drive(claim_size, states, total)
        except (KeyboardInterrupt, Terminated) as stop:
            stopped = stop
        finally:
            self.stop.set()  # workers finish (and record) the chunk they are sending, then stop
            with self.signals.held():  # a second Ctrl-C must not cut this short
                self._shutdown(threads)
        if self.error is not None:
            raise self.error
        if stopped is None and self.signals.pending is not None:
            stopped = Terminated(self.signals.pending)
        if stopped is not None:
            raise stopped

    def _open_transports(self) -> list[Transport]:
        # Opened and connected before anything is claimed, so a misconfiguration
        # (a wrong host, a refused password, no API key) stops the run first.
        transports: list[Transport] = []
        try:
            for _ in range(self.workers):
                transports.append(self.open_transport())
                connect_now(transports[-1])
        except BaseException:
            for transport in transports:
                transport.close()
            raise
        return transports

    # -- the main thread ------------------------------------------------------

    def _drive(self, claim_size: int, states: Sequence[State], total: int) -> None:
        # One batch being sent per worker and one built, ready for whichever finishes first.
        capacity = self.workers + 1
        exhausted = False
        while True:
            # Keep every worker busy (and one batch queued behind each) before waiting.
            while not self.stop.is_set() and not exhausted and self.in_flight < capacity:
                with self.signals.critical():  # claimed rows are always queued or given back
                    rows = self._claim(claim_size, states)
                    if not rows:
                        exhausted = True
                        break
                    try:
                        messages = self._build(rows)
                    except BaseException:
                        self.ledger.release(self.issue.id, [r.address_key for r in rows])
                        raise
                    self.jobs.put((rows, messages))
                    self.in_flight += 1
            if self.in_flight == 0:
                if self.stop.is_set() or not self._wait_for_retries():
                    return
                exhausted = False
                continue
            # Wait for a worker in short polls: a signal acts between them, never
            # between taking a worker's answer and giving back the rows it did not send.
            with self.signals.critical():
                try:
                    unsent, error = self.done.get(timeout=0.1)
                except queue.Empty:
                    continue
                self.in_flight -= 1
                if error is not None and self.error is None:
                    self.error = error
                if unsent:
                    self.ledger.release(self.issue.id, [r.address_key for r in unsent])
            exhausted = False
            if self.progress is not None:
                self.progress(self.tally.progress(total))

    def _claim(self, claim_size: int, states: Sequence[State]) -> list[DeliveryRow]:
        # --limit caps the messages handed to the transport, retries included.
        room = claim_size if self.limit is None else min(claim_size, self.limit - self.claimed)
        room = self.daily.grant(room, busy=self.in_flight > 0)
        if room <= 0:
            return []
        rows = self.ledger.claim(
            self.issue.id,
            self.run_id,
            room,
            now=self.clock.time(),
            max_run_attempts=self.max_attempts,
            states=states,
            max_total_attempts=self.max_total_attempts,
        )
        self.claimed += len(rows)
        return rows

    def _wait_for_retries(self) -> bool:
        """Sleep until the next temporary failure may be tried again; False if none may."""
        wake = self.ledger.waiting_retry_at(self.issue.id, self.run_id, self.max_attempts)
        if wake is None or (self.limit is not None and self.claimed >= self.limit):
            return False
        if self.daily.reached is not None:
            return False  # the cap holds until the window moves on: the next run carries on
        wait = wake - self.clock.time()
        if wait > self.settings.retry.max_delay_seconds:
            # A provider asked for a wait of hours (Notify's daily limit): no run should
            # sleep through that holding the dispatch lock; the next run carries on.
            return False
        self.clock.sleep(max(0.0, wait))
        return True

    def _build(self, rows: list[DeliveryRow]) -> list[OutgoingMessage]:
        # A builder per batch: the Date header is the time the batch was built.
        builder = MessageBuilder(
            self.settings, self.issue, date=self.message_date or datetime.now(UTC)
        )
        messages: list[OutgoingMessage] = []
        own_body = self.provider_body
        for row in rows:
            recipient = row.recipient()
            variant = row.variant()
            email = self.renderer.personalise(variant, recipient)
            data = builder.build(recipient, email)
            message_id = message_id_for(self.issue.id, recipient.email, self.domain)
            body = own_body.render(variant, recipient) if own_body is not None else None
            messages.append(OutgoingMessage(recipient.email, message_id, data, body))
        return messages

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        """Stop the workers (each finishes and records its chunk); give back rows never sent.

        Then record what is still held: the refusals of an unfinished streak
        (individual ones after all), and results the ledger failed to take.
        A ledger that still fails leaves those rows `sending`, to be taken
        back by the next run as in flight.
        """
        unsent: list[str] = []
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                unsent += [r.address_key for r in job[0]]
        for _ in threads:
            self.jobs.put(None)
        for thread in threads:
            thread.join()
        while True:
            try:
                rows, error = self.done.get_nowait()
            except queue.Empty:
                break
            unsent += [r.address_key for r in rows]
            if error is not None and self.error is None:
                self.error = error
        try:
            # First what was handed over: recording it is what keeps it from going twice.
            if self.unrecorded:
                self.ledger.make_room()
            while self.unrecorded:
                self._write_outcomes(self.unrecorded[0], retried=True)
                self.unrecorded.pop(0)
            if not self.streak.tripped:
                self._write(self.streak.end())
            if unsent:
                self.ledger.release(self.issue.id, unsent)
        except LedgerError as error:
            if self.error is None:
                self.error = error

    # -- the workers ------------------------------------------------------------

    def _work(self, transport: Transport) -> None:
        """Send queued batches, recording each chunk's results at once, until told to stop.

        Every job gets exactly one answer on `done`: (rows never sent, error or None).
        """
        size = max(1, transport.batch_size)
        if not transport.sends_batch_in_one_request:
            size = min(size, RECORD_EVERY)
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                rows, messages = job
                position = 0
                error: BaseException | None = None
                try:
                    while position < len(messages) and not self.stop.is_set():
                        end = position + size
                        stop = self._send_chunk(
                            transport, rows[position:end], messages[position:end]
                        )
                        position = end  # handed over (or suppressed): never given back as unsent
                        if stop is not None:
                            raise stop
                except BaseException as caught:  # handed to the main thread, which re-raises it
                    self.stop.set()
                    error = caught
                self.done.put((rows[position:], error))
        finally:
            transport.close()

    def _send_chunk(
        self, transport: Transport, rows: list[DeliveryRow], messages: list[OutgoingMessage]
    ) -> BaseException | None:
        """Hand one chunk to the transport and record the results; the error that stops the run.

        The rate limit is waited for first; then people suppressed since the
        run started are recorded `suppressed` and left out, and the rest are
        marked handed over (committed) before the transport is called: the
        order the delivery protocol sets. An exception before the results
        come back leaves the rows to be given back as unsent.
        """
        for _ in messages:
            self.limiter.acquire()
        rows, messages = self._leave_out_suppressed(rows, messages)
        if not messages:
            return None
        self.ledger.hand_over(self.issue.id, [row.address_key for row in rows])
        results = transport.send_batch(messages)
        if len(results) != len(messages):
            raise NewsletterError(
                f"the {transport.name} transport returned {len(results)} results "
                f"for {len(messages)} messages"
            )
        return self._record(rows, results)

    def _leave_out_suppressed(
        self, rows: list[DeliveryRow], messages: list[OutgoingMessage]
    ) -> tuple[list[DeliveryRow], list[OutgoingMessage]]:
        """Record as `suppressed` whoever is on the suppression list now; the rest, to send."""
        keep: list[tuple[DeliveryRow, OutgoingMessage]] = []
        left_out: list[tuple[Outcome, str | None]] = []
        for row, message in zip(rows, messages, strict=True):
            suppression = self.suppressions.suppression(row.address_key)
            if suppression is None:
                keep.append((row, message))
            else:
                detail = f"suppressed: {suppression.reason} (while this issue was being sent)"
                left_out.append((Outcome(row.address_key, "suppressed", detail), None))
        if left_out:
            self.ledger.record(self.issue.id, left_out)
        return [row for row, _ in keep], [message for _, message in keep]

    def _record(
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
                self._write(to_write)
                if give_back:
                    self.ledger.release(self.issue.id, [row.address_key for row in give_back])
            except LedgerError as error:
                return error
        return stop

    def _write(self, results: list[tuple[DeliveryRow, DeliveryResult]]) -> None:
        """Record results in one transaction; if the ledger fails, keep them for one more try."""
        if not results:
            return
        outcomes = [(row, result, self._outcome(row, result)) for row, result in results]
        try:
            self._write_outcomes(outcomes)
        except LedgerError:
            with self.tally.lock:
                self.tally.unrecorded += len(outcomes)
            self.unrecorded.append(outcomes)
            raise

    def _write_outcomes(
        self,
        outcomes: list[tuple[DeliveryRow, DeliveryResult, Outcome]],
        *,
        retried: bool = False,
    ) -> None:
        self.ledger.record(
            self.issue.id,
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
