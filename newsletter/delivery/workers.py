"""The send run's workers: one per connection, each building, handing over and recording chunks.

A worker takes a batch of claimed rows from `jobs`, and a chunk at a time
(`RECORD_EVERY` messages for a transport that sends one by one) builds the
messages (`building.py`), hands them over and records the results
(`recording.Recorder.send_chunk`), until the batch is done or `stop` is set.
It then answers on `done`: the rows it never sent, the error that stopped
it, and, from a sending process, what it recorded (`Answer`).

Workers are threads, or, where the connections fit (`sending_processes.py`),
forked processes running the same loop.
"""

from __future__ import annotations

import os
import threading
from multiprocessing.context import ForkProcess
from typing import Any, Protocol

from newsletter.content.issue import Issue
from newsletter.core.ratelimit import RateLimiter
from newsletter.core.settings import Settings
from newsletter.delivery.building import ChunkBuilder
from newsletter.delivery.recording import Recorder, TallyDelta
from newsletter.delivery.sending_processes import (
    become_sending_process,
    fork_context,
    orphaned_already,
    portable,
    processes_fit,
    start_process,
)
from newsletter.ledger.deliveries import DeliveryRow
from newsletter.render.variants import Renderer
from newsletter.transports.base import ProviderBody, Transport

# A transport that delivers messages one by one is handed (and records) a few at a
# time, so results are recorded every few messages and a run killed mid-batch
# leaves only a handful in flight. One that sends a batch in one request gets a batch.
RECORD_EVERY = 5

# A worker's answer to each job: the rows it never sent, the error that stopped it,
# and (from a sending process) what it recorded. A process ends with (None, error, counts).
Answer = tuple[list[DeliveryRow] | None, BaseException | None, TallyDelta | None]
# A sending thread, or a sending process.
Worker = threading.Thread | ForkProcess


class Run(Protocol):
    """What the workers share with the run that starts them (`send._SendRun`)."""

    settings: Settings
    issue: Issue
    renderer: Renderer
    provider_body: ProviderBody | None
    message_date: Any
    recorder: Recorder
    limiter: RateLimiter
    workers: int
    jobs: Any  # queue of list[DeliveryRow] | None
    done: Any  # queue of Answer
    stop: Any  # threading.Event or its process twin
    processes: list[ForkProcess]


def start_workers(run: Run, transports: list[Transport], workers: list[Worker]) -> None:
    """A sending process per connection where they fit (`sending_processes.py`), else threads."""
    if not processes_fit(transports, run.limiter):
        for i, transport in enumerate(transports):
            thread = threading.Thread(
                target=work, args=(run, transport), name=f"newsletter-send-{i}"
            )
            thread.daemon = True
            workers.append(thread)
            thread.start()
        return
    context = fork_context()
    run.jobs = context.Queue(maxsize=run.workers + 1)
    run.done = context.Queue()
    run.stop = context.Event()
    try:
        for i in range(len(transports)):
            name = f"newsletter-send-{i}"
            process = start_process(work_in_child, run, transports, i, os.getpid(), name=name)
            run.processes.append(process)
            workers.append(process)
    finally:
        for transport in transports:
            transport.forget_connection()  # type: ignore[attr-defined]  # the child's now


def work(run: Run, transport: Transport, parent_pid: int | None = None) -> None:
    """Send queued batches, recording each chunk's results at once, until told to stop.

    Every job gets exactly one `Answer` on `done`; in a sending process of
    `parent_pid`, with what it recorded.
    """
    size = max(1, transport.batch_size)
    if not transport.sends_batch_in_one_request:
        size = min(size, RECORD_EVERY)
    builder = ChunkBuilder(
        run.settings, run.issue, run.renderer, run.provider_body, run.message_date
    )
    try:
        while True:
            rows: list[DeliveryRow] | None = run.jobs.get()
            if rows is None:
                return
            position = 0
            error: BaseException | None = None
            try:
                while position < len(rows) and not run.stop.is_set():
                    if parent_pid is not None:
                        orphaned_already(parent_pid)
                    chunk = rows[position : position + size]
                    messages = builder.build(chunk)
                    stop = run.recorder.send_chunk(transport, run.limiter, chunk, messages)
                    # Handed over (or suppressed): never given back as unsent.
                    position += len(chunk)
                    if stop is not None:
                        raise stop
            except BaseException as caught:  # handed to the main thread, which re-raises it
                run.stop.set()
                error = caught
            if parent_pid is None:
                run.done.put((rows[position:], error, None))
            else:
                run.done.put((rows[position:], portable(error), run.recorder.tally.take()))
    finally:
        transport.close()


def work_in_child(run: Run, transports: list[Transport], index: int, parent_pid: int) -> None:
    """A sending process: `work` on its own connection, with its own ledger connection."""
    become_sending_process(parent_pid)
    for other in transports[:index] + transports[index + 1 :]:
        other.forget_connection()  # type: ignore[attr-defined]  # another process's
    error: BaseException | None = None
    try:
        run.recorder.ledger.after_fork()
        work(run, transports[index], parent_pid)
        run.recorder.record_what_is_held()
    except BaseException as caught:
        run.stop.set()
        error = caught
    run.done.put((None, portable(error), run.recorder.tally.take()))
