"""Drive a transport from the ledger: claim, send, record; exactly once per person.

A run has three stages, so that building messages overlaps the network:

1. the audience is streamed into the ledger as `pending` rows (suppressed
   people as `suppressed`), a few hundred per transaction;
2. the main thread claims rows in batches (committed as `sending` before any
   transport sees them), builds their messages, and queues them;
3. N worker threads, each with its own transport (its own connection), send
   the batches under a shared rate limit and hand the results back to the
   main thread, which records each batch in one transaction.

Temporary failures are tried again within the run with exponential back-off
and jitter; permanent ones are recorded and, after
`retry.hard_bounce_after` of them, the address goes on the suppression list.
Nothing here holds more than a few batches of messages, so a list of 100,000
costs the same memory as a list of 100.
"""

from __future__ import annotations

import queue
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from newsletter.audience import (
    AudienceCounts,
    Recipient,
    Suppression,
    iter_audience,
    segments_of,
)
from newsletter.content import Issue
from newsletter.errors import NewsletterError
from newsletter.ledger import (
    CLAIMABLE,
    UNFINISHED,
    DeliveryRow,
    Ledger,
    NewRecipient,
    Outcome,
    State,
)
from newsletter.message import (
    MessageBuilder,
    message_id_for,
    sender_domain,
)
from newsletter.project import Project
from newsletter.ratelimit import Clock, RateLimiter, SystemClock, backoff_delay
from newsletter.render import Renderer
from newsletter.settings import Settings
from newsletter.suppression import add_suppression
from newsletter.transports import open_transport, transport_type
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Transport

# Rows claimed per transaction. Each claimed row becomes a built message held in
# memory until sent (~200 KB for the sample issue), so claims stay small.
CLAIM_BATCH = 20
INSERT_BATCH = 500
TransportFactory = Callable[[], Transport]


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.issue_id,
            "sent": self.sent,
            "failed_temporary": self.failed_temporary,
            "failed_permanent": self.failed_permanent,
            "suppressed": self.suppressed,
            "skipped_already_sent": self.skipped_already_sent,
            "recovered": self.recovered,
            "hard_bounced": list(self.hard_bounced),
            "failures": [f.__dict__ for f in self.failures],
        }


# --- helpers ----------------------------------------------------------------


def transport_factory_for(settings: Settings, name: str | None) -> TransportFactory:
    return lambda: open_transport(settings, name)


def concurrency_for(settings: Settings, transport_name: str, concurrency: int | None) -> int:
    if concurrency is not None:
        if concurrency < 1:
            raise NewsletterError("--concurrency must be 1 or more")
        return concurrency
    return transport_type(transport_name).default_concurrency(settings)


def make_rate_limiter(settings: Settings, rate: float | None, clock: Clock) -> RateLimiter:
    """The caps for a run: `rate` per second (0 for none) or the settings', plus minute/hour caps."""
    if rate is not None and rate < 0:
        raise NewsletterError("--rate must be 0 (no limit) or more")
    per_second = settings.rate.per_second if rate is None else (rate or None)
    return RateLimiter(clock, per_second, settings.rate.per_minute, settings.rate.per_hour)


# --- the send ---------------------------------------------------------------


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


@dataclass
class _Run:
    """Bookkeeping of one run, shared by the main thread and the workers (under `lock`)."""

    sent: int = 0
    permanent: int = 0
    gave_up: int = 0
    claimed: int = 0
    in_flight: int = 0
    failures: list[Failure] = field(default_factory=list)
    hard_bounced: list[str] = field(default_factory=list)
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_STOP = object()
# A transport that sends a whole batch in one request is handed (and records)
# a batch at a time. One that delivers messages one by one is handed a few at
# a time, so results are recorded every few messages and a run killed
# mid-batch re-sends only a handful.
RECORD_EVERY = 5

Recorder = Callable[[list[DeliveryRow], list[DeliveryResult]], None]


def _chunk_size(transport: Transport) -> int:
    size = max(1, transport.batch_size)
    return size if transport.sends_batch_in_one_request else min(size, RECORD_EVERY)


def _worker(
    transport: Transport,
    limiter: RateLimiter,
    jobs: queue.Queue[Any],
    done: queue.Queue[Any],
    stop: threading.Event,
    record: Recorder,
) -> None:
    """Send queued batches, recording each chunk's results at once, until told to stop.

    Every job gets exactly one answer on `done`: (rows never sent, error or None).
    """
    size = _chunk_size(transport)
    try:
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            rows, messages = job
            position = 0
            try:
                while position < len(messages) and not stop.is_set():
                    chunk = messages[position : position + size]
                    for _ in chunk:
                        limiter.acquire()
                    results = transport.send_batch(chunk)
                    if len(results) != len(chunk):
                        raise NewsletterError(
                            f"the {transport.name} transport returned {len(results)} results "
                            f"for {len(chunk)} messages"
                        )
                    record(rows[position : position + len(chunk)], results)
                    position += len(chunk)
                done.put((rows[position:], None))
            except BaseException as error:  # handed to the main thread, which re-raises it
                stop.set()
                done.put((rows[position:], error))
    finally:
        transport.close()


def send_issue(
    project: Project,
    issue: Issue,
    *,
    transport_name: str | None = None,
    limit: int | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
    progress: Callable[[SendProgress], None] | None = None,
    now: datetime | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    transport_factory: TransportFactory | None = None,
    refresh_audience: bool = True,
    states: Sequence[State] = CLAIMABLE,
) -> SendResult:
    """Send the issue to everyone in its audience not yet sent to, recording each in the ledger.

    Resumable: run it again after a crash and it sends only to the people
    still unsent (rows a killed run left `sending` go again, same Message-ID).
    `now` fixes the messages' Date header; `clock`, `rng` and
    `transport_factory` are for tests. With `refresh_audience=False` the lists
    are not read again: only rows already in the ledger are sent.
    """
    settings = project.settings
    clock = clock or SystemClock()
    rng = rng or random.Random()
    name = transport_name or settings.transport
    workers = concurrency_for(settings, name, concurrency)
    limiter = make_rate_limiter(settings, rate, clock)
    factory = transport_factory or transport_factory_for(settings, name)
    if limit is not None and limit < 0:
        raise NewsletterError("--limit must be 0 or more")
    max_attempts = max(1, settings.retry.max_attempts)
    suppressed_path = project.recipients_dir / "suppressed.csv"
    renderer = Renderer(project, issue)
    ledger = Ledger(settings.ledger_path)
    try:
        ledger.start_issue(issue.id)
        if refresh_audience:
            stream_audience_into_ledger(project, issue, ledger)
        recovered = ledger.recover_interrupted(issue.id)
        counts_before = ledger.count_states(issue.id)
        to_do = sum(counts_before[s] for s in states)
        total = to_do if limit is None else min(limit, to_do)
        # Render every variant before anything is claimed, so a template error
        # stops the run while every row is still pending.
        for variant in ledger.unsent_variants(issue.id):
            renderer.variant(variant)

        run_id = uuid.uuid4().hex
        run = _Run()
        jobs: queue.Queue[Any] = queue.Queue(maxsize=workers + 1)
        results: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        # Transports are opened here, so a misconfiguration stops the run before any claim.
        transports: list[Transport] = []
        try:
            for _ in range(workers):
                transports.append(factory())
        except BaseException:
            for transport in transports:
                transport.close()
            raise

        def record(rows: list[DeliveryRow], delivered: list[DeliveryResult]) -> None:
            _record(
                ledger, settings, run, rows, delivered, max_attempts, clock, rng, suppressed_path
            )

        threads = [
            threading.Thread(
                target=_worker,
                args=(transport, limiter, jobs, results, stop, record),
                name=f"newsletter-send-{i}",
                daemon=True,
            )
            for i, transport in enumerate(transports)
        ]
        claim_size = max(
            [CLAIM_BATCH, *(t.batch_size for t in transports if t.sends_batch_in_one_request)]
        )
        for thread in threads:
            thread.start()

        try:
            _drive(
                ledger=ledger,
                issue=issue,
                settings=settings,
                renderer=renderer,
                run=run,
                run_id=run_id,
                jobs=jobs,
                results=results,
                stop=stop,
                workers=workers,
                claim_size=claim_size,
                limit=limit,
                max_attempts=max_attempts,
                states=states,
                clock=clock,
                rng=rng,
                now=now,
                total=total,
                progress=progress,
                suppressed_path=suppressed_path,
            )
        finally:
            stop.set()  # on Ctrl-C, workers finish (and record) their chunk, then stop
            _shutdown(threads, jobs, results, ledger, issue.id)
        if run.error is not None:
            raise run.error
        final = ledger.count_states(issue.id)
        if not any(final[state] for state in UNFINISHED):
            ledger.finish_issue(issue.id)
        return SendResult(
            issue_id=issue.id,
            sent=run.sent,
            failed_temporary=final["failed-temporary"],
            failed_permanent=run.permanent,
            suppressed=final["suppressed"],
            skipped_already_sent=counts_before["sent"],
            recovered=recovered,
            hard_bounced=tuple(run.hard_bounced),
            failures=tuple(run.failures),
        )
    finally:
        ledger.close()


def retry_issue(project: Project, issue: Issue, **options: Any) -> SendResult:
    """Send the issue again to the people whose delivery failed temporarily (lists not re-read)."""
    return send_issue(
        project, issue, refresh_audience=False, states=("failed-temporary",), **options
    )


def _build(
    settings: Settings,
    issue: Issue,
    renderer: Renderer,
    rows: list[DeliveryRow],
    now: datetime | None,
) -> list[OutgoingMessage]:
    # A builder per batch: the Date header is the time the batch was built.
    builder = MessageBuilder(settings, issue, date=now or datetime.now(UTC))
    domain = sender_domain(settings)
    messages: list[OutgoingMessage] = []
    for row in rows:
        recipient = row.recipient()
        email = renderer.personalise(row.variant(), recipient)
        data = builder.build(recipient, email)
        message_id = message_id_for(issue.id, recipient.email, domain)
        messages.append(OutgoingMessage(recipient.email, message_id, data))
    return messages


def _drive(
    *,
    ledger: Ledger,
    issue: Issue,
    settings: Settings,
    renderer: Renderer,
    run: _Run,
    run_id: str,
    jobs: queue.Queue[Any],
    results: queue.Queue[Any],
    stop: threading.Event,
    workers: int,
    claim_size: int,
    limit: int | None,
    max_attempts: int,
    states: Sequence[State],
    clock: Clock,
    rng: random.Random,
    now: datetime | None,
    total: int,
    progress: Callable[[SendProgress], None] | None,
    suppressed_path: Any,
) -> None:
    # One batch being sent per worker and one built, ready for whichever finishes first.
    capacity = workers + 1
    exhausted = False
    while True:
        # Keep every worker busy (and one batch queued behind each) before waiting.
        while not stop.is_set() and not exhausted and run.in_flight < capacity:
            # --limit caps the messages handed to the transport, retries included.
            room = claim_size if limit is None else min(claim_size, limit - run.claimed)
            rows = (
                ledger.claim(
                    issue.id,
                    run_id,
                    room,
                    now=clock.time(),
                    max_run_attempts=max_attempts,
                    states=states,
                )
                if room > 0
                else []
            )
            run.claimed += len(rows)
            if not rows:
                exhausted = True
                break
            try:
                messages = _build(settings, issue, renderer, rows, now)
            except BaseException:
                ledger.release(issue.id, [r.address_key for r in rows])
                raise
            jobs.put((rows, messages))
            run.in_flight += 1
        if run.in_flight == 0:
            if stop.is_set():
                return
            wake = ledger.waiting_retry_at(issue.id, run_id, max_attempts)
            if wake is None or (limit is not None and run.claimed >= limit):
                return
            clock.sleep(max(0.0, wake - clock.time()))
            exhausted = False
            continue
        unsent, error = results.get()
        run.in_flight -= 1
        if unsent:
            ledger.release(issue.id, [r.address_key for r in unsent])
        if error is not None and run.error is None:
            run.error = error
        exhausted = False
        if progress is not None:
            with run.lock:
                done = run.sent + run.permanent + run.gave_up
                update = SendProgress(
                    done=done, total=total, sent=run.sent, failed=run.permanent + run.gave_up
                )
            progress(update)


def _record(
    ledger: Ledger,
    settings: Settings,
    run: _Run,
    rows: list[DeliveryRow],
    delivered: list[DeliveryResult],
    max_attempts: int,
    clock: Clock,
    rng: random.Random,
    suppressed_path: Path,
) -> None:
    """Record one chunk's results in one transaction (called from a worker thread)."""
    outcomes: list[tuple[Outcome, str | None]] = []
    bounced: list[DeliveryRow] = []
    with run.lock:
        for row, result in zip(rows, delivered, strict=True):
            if result.status == "sent":
                run.sent += 1
                outcome = Outcome(row.address_key, "sent", "", result.provider_id)
            elif result.status == "failed-temporary":
                if row.run_attempts >= max_attempts:
                    run.gave_up += 1
                    run.failures.append(Failure(row.email, "failed-temporary", result.detail))
                    wake = 0.0
                else:
                    delay = backoff_delay(
                        row.run_attempts,
                        settings.retry.base_delay_seconds,
                        settings.retry.max_delay_seconds,
                        rng,
                    )
                    wake = clock.time() + max(delay, result.retry_after or 0.0)
                outcome = Outcome(row.address_key, "failed-temporary", result.detail, None, wake)
            else:
                run.permanent += 1
                run.failures.append(Failure(row.email, "failed-permanent", result.detail))
                outcome = Outcome(row.address_key, "failed-permanent", result.detail)
                bounced.append(row)
            outcomes.append((outcome, result.message_id))
    if rows:
        ledger.record(rows[0].issue_id, outcomes)
    for row in bounced:
        bounces = ledger.permanent_failures(row.address_key)
        if bounces >= settings.retry.hard_bounce_after and add_suppression(
            suppressed_path, row.email, "hard-bounce", date.today()
        ):
            with run.lock:
                run.hard_bounced.append(row.email)


def _shutdown(
    threads: list[threading.Thread],
    jobs: queue.Queue[Any],
    results: queue.Queue[Any],
    ledger: Ledger,
    issue_id: str,
) -> None:
    """Stop the workers (each finishes and records its chunk); give back rows never sent."""
    unsent: list[str] = []
    while True:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            break
        unsent += [r.address_key for r in job[0]]
    for _ in threads:
        jobs.put(_STOP)
    for thread in threads:
        thread.join()
    while True:
        try:
            rows, _error = results.get_nowait()
        except queue.Empty:
            break
        unsent += [r.address_key for r in rows]
    if unsent:
        ledger.release(issue_id, unsent)
