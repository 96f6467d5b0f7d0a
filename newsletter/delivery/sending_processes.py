"""Sending processes: on a machine with cores to spare, a process per connection, not a thread.

Building and handing over a message is mostly Python, and Python runs one
thread at a time: four connections in threads share one core. Where a
transport can be carried into a child process with its open connection
(`transports.base.ForksWithConnection`: SMTP), several connections are sent
over from forked processes instead, each running the same worker loop a
thread would (`workers.work`):

- A child is forked after its transport has connected and every variant is
  rendered, so it inherits both; it opens its own ledger connection (SQLite
  connections never cross a fork) and keeps its own recorder.
- The main process still claims every row, and keeps the daily cap and
  `--limit`; a child's answer for each batch carries what it recorded
  (`TallyDelta`), which the main process adds up for progress and the summary.
- Children ignore SIGINT and SIGTERM: the main process decides when to stop
  and says so through `stop`, as it does to threads. A child dies with the
  main process (PR_SET_PDEATHSIG on Linux, else it checks between chunks),
  as a thread would: a killed run leaves its rows in flight for the next
  run to report, never a child sending on alone.

Processes are used only without a rate limit: `RateLimiter` paces the
threads of one process, and a paced send gains nothing from more cores.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from multiprocessing.context import ForkProcess
from typing import Any

from newsletter.core.errors import NewsletterError
from newsletter.core.ratelimit import RateLimiter
from newsletter.transports.base import ForksWithConnection, Transport

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def processes_fit(transports: Sequence[Transport], limiter: RateLimiter) -> bool:
    """Whether this run's connections are better sent over from processes than threads."""
    return (
        len(transports) > 1
        and (os.cpu_count() or 1) > 1
        and limiter.unlimited
        and "fork" in multiprocessing.get_all_start_methods()
        and all(isinstance(t, ForksWithConnection) for t in transports)
    )


def fork_context() -> Any:
    return multiprocessing.get_context("fork")


def start_process(target: Any, *args: Any, name: str) -> ForkProcess:
    process: ForkProcess = fork_context().Process(target=target, args=args, name=name, daemon=True)
    process.start()
    return process


def become_sending_process(parent_pid: int) -> None:
    """In a forked child: leave stopping to the main process, and never outlive it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    orphaned_already(parent_pid)


def orphaned_already(parent_pid: int) -> None:
    """Exit at once if the main process has gone (before PDEATHSIG was set, or without it)."""
    if os.getppid() != parent_pid:
        os._exit(1)


def portable(error: BaseException | None) -> BaseException | None:
    """`error` if it survives the trip to the main process, else one that says what it was."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return NewsletterError(f"a sending process failed: {type(error).__name__}: {error}")
    return error


def died_unexpectedly(process: ForkProcess) -> NewsletterError:
    return NewsletterError(
        f"a sending process stopped unexpectedly (exit code {process.exitcode}); the people "
        "it was sending to are left as they were, and the next run reports any it may "
        "have sent. Run the same command again"
    )
