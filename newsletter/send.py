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
and jitter; permanent ones are recorded and, after
`retry.hard_bounce_after` of them, the address goes on the suppression list.
Nothing here holds more than a few batches of messages, so a list of 100,000
costs the same memory as a list of 100.

`SendOptions` carries what the person chose on the command line (transport,
concurrency, rate, limit) to the plan and the run.
"""

from __future__ import annotations

import queue
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypedDict, Unpack

from jinja2 import TemplateError

from newsletter.audience import (
    AudienceCounts,
    Recipient,
    Suppression,
    iter_audience,
    segments_of,
)
from newsletter.content import Issue
from newsletter.errors import ContentError, NewsletterError
from newsletter.ledger import (
    CLAIMABLE,
    UNFINISHED,
    DeliveryRow,
    Ledger,
    NewRecipient,
    Outcome,
    State,
)
from newsletter.message import MessageBuilder, message_id_for, sender_domain
from newsletter.project import Project
from newsletter.ratelimit import Clock, RateLimiter, SystemClock, backoff_delay
from newsletter.render import Renderer
from newsletter.render_errors import render_error_problems
from newsletter.settings import Settings
from newsletter.suppression import add_suppression
from newsletter.transports import open_transport, transport_type
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
    hard_bounced: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nobody in the run is left undelivered."""
        return self.failed_permanent == 0 and self.failed_temporary == 0

    def counts(self) -> dict[str, int]:
        """The run's numbers by name, as `--format json` and the dispatch log show them."""
        return {
            "sent": self.sent,
            "failed_temporary": self.failed_temporary,
            "failed_permanent": self.failed_permanent,
            "suppressed": self.suppressed,
            "skipped_already_sent": self.skipped_already_sent,
            "recovered": self.recovered,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.issue_id,
            **self.counts(),
            "hard_bounced": list(self.hard_bounced),
            "failures": [f.__dict__ for f in self.failures],
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
    """Send the issue again to the people whose delivery failed temporarily (lists not re-read)."""
    run = _SendRun(project, issue, options or SendOptions(), hooks)
    return run.execute(refresh_audience=False, states=("failed-temporary",))


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
    gave_up: int = 0
    failures: list[Failure] = field(default_factory=list)
    hard_bounced: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self, total: int) -> SendProgress:
        with self.lock:
            failed = self.permanent + self.gave_up
            return SendProgress(done=self.sent + failed, total=total, sent=self.sent, failed=failed)


class _SendRun:
    """One run of `send` or `retry` over the ledger.

    The main thread claims rows, builds their messages and queues them
    (`_drive`); a worker thread per transport sends them and records each
    chunk (`_work`, `_record`); `_shutdown` stops the workers and gives back
    the rows never sent. Only the main thread touches `claimed`, `in_flight`
    and `error`; the workers share `tally`.
    """

    def __init__(
        self,
        project: Project,
        issue: Issue,
        options: SendOptions,
        hooks: RunHooks,
    ) -> None:
        settings = project.settings
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
        self.open_transport = hooks.get("transport_factory") or (
            lambda: open_transport(settings, options.transport)
        )
        self.max_attempts = max(1, settings.retry.max_attempts)
        self.suppressed_path = project.paths.suppressed_path
        self.domain = sender_domain(settings)
        self.renderer = Renderer(project, issue)
        self.run_id = uuid.uuid4().hex
        self.tally = _Tally()
        self.jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=self.workers + 1)
        self.done: queue.Queue[_Done] = queue.Queue()
        self.stop = threading.Event()
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

    def execute(self, *, refresh_audience: bool, states: Sequence[State]) -> SendResult:
        """Send to the rows in `states` (after adding the audience, if `refresh_audience`)."""
        ledger, issue_id = self.ledger, self.issue.id
        try:
            # Before the ledger is touched: a transport that cannot work stops the run here.
            self.transports = self._open_transports()
            ledger.start_issue(issue_id)
            if refresh_audience:
                stream_audience_into_ledger(self.project, self.issue, ledger)
            recovered = ledger.recover_interrupted(issue_id)
            before = ledger.count_states(issue_id)
            to_do = sum(before[s] for s in states)
            total = to_do if self.limit is None else min(self.limit, to_do)
            self._render_variants()
            self._send_all(states, total)
            final = ledger.count_states(issue_id)
            if not any(final[state] for state in UNFINISHED):
                ledger.finish_issue(issue_id)
            return SendResult(
                issue_id=issue_id,
                sent=self.tally.sent,
                failed_temporary=final["failed-temporary"],
                failed_permanent=self.tally.permanent,
                suppressed=final["suppressed"],
                skipped_already_sent=before["sent"],
                recovered=recovered,
                hard_bounced=tuple(self.tally.hard_bounced),
                failures=tuple(self.tally.failures),
            )
        finally:
            for transport in self.transports:  # opened but never handed to a worker
                transport.close()
            ledger.close()

    def _render_variants(self) -> None:
        """Render every variant before anything is claimed, so a broken template stops the run.

        Every row is still pending then; the error is a located ContentError.
        """
        try:
            for variant in self.ledger.unsent_variants(self.issue.id):
                self.renderer.variant(variant)
        except TemplateError as error:
            raise ContentError(render_error_problems(error, self.issue.path)) from None

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
        try:
            self._drive(claim_size, states, total)
        finally:
            self.stop.set()  # on Ctrl-C, workers finish (and record) their chunk, then stop
            self._shutdown(threads)
        if self.error is not None:
            raise self.error

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
            unsent, error = self.done.get()
            self.in_flight -= 1
            if unsent:
                self.ledger.release(self.issue.id, [r.address_key for r in unsent])
            if error is not None and self.error is None:
                self.error = error
            exhausted = False
            if self.progress is not None:
                self.progress(self.tally.progress(total))

    def _claim(self, claim_size: int, states: Sequence[State]) -> list[DeliveryRow]:
        # --limit caps the messages handed to the transport, retries included.
        room = claim_size if self.limit is None else min(claim_size, self.limit - self.claimed)
        if room <= 0:
            return []
        rows = self.ledger.claim(
            self.issue.id,
            self.run_id,
            room,
            now=self.clock.time(),
            max_run_attempts=self.max_attempts,
            states=states,
        )
        self.claimed += len(rows)
        return rows

    def _wait_for_retries(self) -> bool:
        """Sleep until the next temporary failure may be tried again; False if none may."""
        wake = self.ledger.waiting_retry_at(self.issue.id, self.run_id, self.max_attempts)
        if wake is None or (self.limit is not None and self.claimed >= self.limit):
            return False
        self.clock.sleep(max(0.0, wake - self.clock.time()))
        return True

    def _build(self, rows: list[DeliveryRow]) -> list[OutgoingMessage]:
        # A builder per batch: the Date header is the time the batch was built.
        builder = MessageBuilder(
            self.settings, self.issue, date=self.message_date or datetime.now(UTC)
        )
        messages: list[OutgoingMessage] = []
        for row in rows:
            recipient = row.recipient()
            email = self.renderer.personalise(row.variant(), recipient)
            data = builder.build(recipient, email)
            message_id = message_id_for(self.issue.id, recipient.email, self.domain)
            messages.append(OutgoingMessage(recipient.email, message_id, data))
        return messages

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        """Stop the workers (each finishes and records its chunk); give back rows never sent."""
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
                rows, _error = self.done.get_nowait()
            except queue.Empty:
                break
            unsent += [r.address_key for r in rows]
        if unsent:
            self.ledger.release(self.issue.id, unsent)

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
                try:
                    while position < len(messages) and not self.stop.is_set():
                        chunk = messages[position : position + size]
                        for _ in chunk:
                            self.limiter.acquire()
                        results = transport.send_batch(chunk)
                        if len(results) != len(chunk):
                            raise NewsletterError(
                                f"the {transport.name} transport returned {len(results)} results "
                                f"for {len(chunk)} messages"
                            )
                        self._record(rows[position : position + len(chunk)], results)
                        position += len(chunk)
                    self.done.put((rows[position:], None))
                except BaseException as error:  # handed to the main thread, which re-raises it
                    self.stop.set()
                    self.done.put((rows[position:], error))
        finally:
            transport.close()

    def _record(self, rows: list[DeliveryRow], delivered: list[DeliveryResult]) -> None:
        """Record one chunk's results in one transaction (called from a worker thread)."""
        with self.tally.lock:
            outcomes = [
                (self._outcome(row, result), result.message_id)
                for row, result in zip(rows, delivered, strict=True)
            ]
        if rows:
            self.ledger.record(rows[0].issue_id, outcomes)
        for row, result in zip(rows, delivered, strict=True):
            if result.status == "failed-permanent":
                self._suppress_if_hard_bounced(row)

    def _outcome(self, row: DeliveryRow, result: DeliveryResult) -> Outcome:
        """What to record for one result, counted in the tally (whose lock the caller holds)."""
        tally = self.tally
        if result.status == "sent":
            tally.sent += 1
            return Outcome(row.address_key, "sent", "", result.provider_id)
        if result.status == "failed-permanent":
            tally.permanent += 1
            tally.failures.append(Failure(row.email, "failed-permanent", result.detail))
            return Outcome(row.address_key, "failed-permanent", result.detail)
        if row.run_attempts >= self.max_attempts:
            tally.gave_up += 1
            tally.failures.append(Failure(row.email, "failed-temporary", result.detail))
            wake = 0.0
        else:
            retry = self.settings.retry
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
