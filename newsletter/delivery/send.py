"""Send an issue: drive a transport from the ledger, claim, send, record; exactly once per person.

A run has three stages:

1. the audience is streamed into the ledger as `pending` rows (suppressed
   people as `suppressed`), a few hundred per transaction;
2. the main thread claims rows in batches (committed as `sending` before any
   transport sees them) and queues them;
3. N workers, each with its own transport (its own connection), build each
   chunk's messages (`building.py`) and send them under a shared rate limit,
   record each chunk's results in one transaction, then tell the main thread
   they are done with the batch (`workers.py`). Workers are threads, or, for
   several SMTP connections without a rate limit, forked processes, so the
   connections use every core (`sending_processes.py`).

Before anything is opened, the run refuses an issue that is not approved
or whose one-click link cannot be signed (`gate.py`). Before the ledger is
touched, every worker's transport is opened and asked to connect
(`transports.base.Connects`), and every variant is rendered before anyone is
claimed: a relay that cannot be reached, a refused password or a template
that does not render stops the run with one message, and nobody is marked
failed or queued for a retry because of it. Then, before the first message,
the gate checks again that the files and the rendered emails are exactly
what was approved. Just before each chunk is handed over, people who
unsubscribed since the run started are left out (`recording.py`).

Temporary failures are tried again within the run with exponential back-off
and jitter, up to `retry.max_attempts` times a run and `retry.max_total_attempts`
in all (then `gave-up`). Permanent refusals about the recipient are recorded
and, after `retry.hard_bounce_after` of them, the address goes on the
suppression list; but `BREAKER_STREAK` identical refusals in a row stop the
run and suppress nobody (the relay, the sender or the message is at fault,
not that many people). A message whose outcome is unknown (sent, never
confirmed) is recorded `unknown` and left alone. Refusals of the message
itself stop the run (the transport says so). The rules are in `ledger/deliveries.py`.

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

`SendOptions` (`send_options.py`) carries what the person chose on the
command line (transport, concurrency, rate, limit) to the plan and the run.
"""

from __future__ import annotations

import queue
import random
import threading
import uuid
from collections.abc import Sequence
from multiprocessing.context import ForkProcess
from typing import Any, Unpack

from jinja2 import TemplateError

from newsletter.audience.lists import (
    Variant,
)
from newsletter.content.issue import Issue
from newsletter.core.errors import ContentError, LedgerError, NewsletterError
from newsletter.core.project import Project
from newsletter.core.ratelimit import SystemClock
from newsletter.delivery.audience_rows import stream_audience_into_ledger
from newsletter.delivery.daily_cap import DailyAllowance
from newsletter.delivery.gate import check_before_opening, check_rendered
from newsletter.delivery.recording import Recorder
from newsletter.delivery.send_options import (
    Failure,
    RunHooks,
    SendOptions,
    SendProgress,
    SendResult,
    TransportFactory,
)
from newsletter.delivery.sending_processes import died_unexpectedly
from newsletter.delivery.stopping import (
    StopSignals,
    Terminated,
    signal_of,
)
from newsletter.delivery.workers import RECORD_EVERY, Answer, Worker, start_workers
from newsletter.ledger.deliveries import (
    CLAIMABLE,
    RETRYABLE,
    UNCONFIRMED,
    UNFINISHED,
    DeliveryRow,
    Ledger,
    State,
)
from newsletter.render.problems import render_error_problems
from newsletter.render.variants import Renderer
from newsletter.transports.base import Transport, connect_now
from newsletter.transports.lookup import provider_body, transport_opener

# Imported from here by callers since before they had modules of their own.
__all__ = [
    "RECORD_EVERY",
    "Failure",
    "SendProgress",
    "TransportFactory",
    "stream_audience_into_ledger",
]

# Rows claimed per transaction. A worker builds a chunk of them at a time, so
# at most a chunk of built messages (~100 KB each for the sample issue) is held
# per connection.
CLAIM_BATCH = 20


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


# --- the run -----------------------------------------------------------------


class _SendRun:
    """One run of `send` or `retry` over the ledger.

    The main thread claims rows and queues them (`_drive`); a worker per
    transport builds, hands over and records each chunk (`workers.work`,
    through the `recording.Recorder`); `_shutdown` stops the workers and gives
    back the rows never sent. Only the main thread touches `claimed`,
    `in_flight` and `error`.
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
        self.renderer = Renderer(project, issue)
        self.run_id = uuid.uuid4().hex
        # Thread queues and event, or process ones once `workers.start_workers` forks.
        self.jobs: Any = queue.Queue(maxsize=self.workers + 1)
        self.done: Any = queue.Queue()
        self.stop: Any = threading.Event()
        self.processes: list[ForkProcess] = []
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
        self.recorder = Recorder(
            self.ledger, issue.id, settings, self.clock, self.rng, project.paths.suppressed_path
        )

    def execute(self, *, refresh_audience: bool, states: Sequence[State]) -> SendResult:
        """Send to the rows in `states` (after adding the audience, if `refresh_audience`)."""
        try:
            with self.signals.installed():
                try:
                    return self._execute(refresh_audience, states)
                except (KeyboardInterrupt, Terminated) as stop:
                    raise self.recorder.interrupted(signal_of(stop)) from None
                except LedgerError as error:
                    raise self.recorder.ledger_failed(error) from error
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
        tally = self.recorder.tally
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
        claim_size = max(
            [CLAIM_BATCH, *(t.batch_size for t in transports if t.sends_batch_in_one_request)]
        )
        workers: list[Worker] = []
        stopped: BaseException | None = None
        try:
            start_workers(self, transports, workers)
            self._drive(claim_size, states, total)
        except (KeyboardInterrupt, Terminated) as stop:
            stopped = stop
        finally:
            self.stop.set()  # workers finish (and record) the chunk they are sending, then stop
            with self.signals.held():  # a second Ctrl-C must not cut this short
                self._shutdown(workers)
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
                    self.jobs.put(rows)
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
                    answer = self.done.get(timeout=0.1)
                except queue.Empty:
                    if self._a_process_ended():
                        return
                    continue
                if answer[0] is not None:
                    self.in_flight -= 1
                self._take(answer)
            exhausted = False
            if self.progress is not None:
                self.progress(self.recorder.tally.progress(total))

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

    def _take(self, answer: Answer) -> None:
        """A worker's answer: give back the rows it never sent, keep its error and counts."""
        unsent, error, counted = answer
        if error is not None:
            self.stop.set()
            if self.error is None:
                self.error = error
        if counted is not None:
            self.recorder.tally.add(counted)
        if unsent:
            self.ledger.release(self.issue.id, [r.address_key for r in unsent])

    def _a_process_ended(self) -> bool:
        """True if a sending process has ended: the run stops (with an error if it died)."""
        ended = [process for process in self.processes if process.exitcode is not None]
        for process in ended:
            if process.exitcode != 0 and self.error is None:
                self.error = died_unexpectedly(process)
        if ended:
            self.stop.set()
        return bool(ended)

    def _shutdown(self, workers: list[Worker]) -> None:
        """Stop the workers (each finishes and records its chunk); give back rows never sent.

        Then record what is still held: the refusals of an unfinished streak
        (individual ones after all), and results the ledger failed to take
        (a sending process does both itself before it ends). A ledger that
        still fails leaves those rows `sending`, to be taken back by the next
        run as in flight.
        """
        unsent: list[str] = []
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                unsent += [r.address_key for r in job]
        for _ in workers:
            self.jobs.put(None)
        answers: list[Answer] = []
        # A process's last answers must be read while it ends: it cannot end
        # with them unread in a full pipe.
        while any(worker.is_alive() for worker in workers):
            try:
                answers.append(self.done.get(timeout=0.1))
            except queue.Empty:
                self._a_process_ended()
        for worker in workers:
            worker.join()
        while True:
            try:
                answers.append(self.done.get_nowait())
            except queue.Empty:
                break
        self._a_process_ended()
        try:
            for answer in answers:
                self._take((None, answer[1], answer[2]))
                unsent += [r.address_key for r in answer[0] or []]
            self.recorder.record_what_is_held()
            if unsent:
                self.ledger.release(self.issue.id, unsent)
        except LedgerError as error:
            if self.error is None:
                self.error = error
