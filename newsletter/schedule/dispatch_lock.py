"""The dispatch lock: one `newsletter dispatch` at a time, released however a run ends.

`flock` on `lock_path`: the kernel drops the lock when the process exits, so
a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from newsletter.core.errors import LockHeldError, NewsletterError
from newsletter.core.private_files import private_dir, private_opener


@contextlib.contextmanager
def dispatch_lock(lock_path: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the dispatch lock (`flock` on `lock_path`) for the duration of the block.

    The kernel drops the lock when the process exits however it ends, so a
    crashed run never leaves a stale lock behind. Without `wait`, a lock held
    by another run raises LockHeldError at once.
    """
    try:
        private_dir(lock_path.parent)
        handle = open(lock_path, "a+", encoding="utf-8", opener=private_opener)  # noqa: SIM115
    except OSError as error:
        raise NewsletterError(
            f"cannot take the dispatch lock {lock_path} ({error.strerror or error}); check "
            f"that this user may write to {lock_path.parent}. Nothing was sent"
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise LockHeldError(
                f"another dispatch is already running{who}; it holds {lock_path}. "
                "This run did nothing; the next one will carry on (or use --wait)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock
