"""The suppression list as it is now, for a send run that may last hours.

A run reads its audience (suppressions included) into the ledger when it
starts; someone who unsubscribes while it runs is on `suppressed.csv` a
moment later. The run asks this watch before each hand-over (the delivery
protocol in `ledger/deliveries.py`). The file is read again only when it has
changed (its size, modification time or inode: `add_suppression` replaces
it), so asking costs one `stat` per chunk of messages.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from newsletter.audience.suppression import SuppressedAddress, read_suppressed

_Signature = tuple[int, int, int] | None


class SuppressionWatch:
    """Who is on the suppression list at `path` now; safe to ask from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature: _Signature = None
        self._suppressed: Mapping[str, SuppressedAddress] = {}
        self._read_if_changed()

    def _signature_now(self) -> _Signature:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return status.st_mtime_ns, status.st_size, status.st_ino

    def _read_if_changed(self) -> None:
        signature = self._signature_now()
        if signature == self._signature:
            return
        # Rows with problems are left out, as the audience leaves them out; the
        # valid rows still count (a half-edited file must not unsuppress anyone).
        suppressed, _ = read_suppressed(self.path)
        self._signature, self._suppressed = signature, suppressed

    def now(self) -> Mapping[str, SuppressedAddress]:
        """Everyone on the list now, by lower-cased address (one `stat` when unchanged)."""
        with self._lock:
            self._read_if_changed()
            return self._suppressed
