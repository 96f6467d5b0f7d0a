"""The ledger's questions for `rate.per_day` (`delivery/daily_cap.py`): sends in a rolling window.

Every issue counts, since the limit is the mailbox's, not an issue's; times
are the run's clock, as `Ledger.record(now=...)` stamped them.
"""

from __future__ import annotations

from datetime import datetime

from newsletter.ledger.ledger_file import LedgerFile
from newsletter.ledger.rows import time_text


class DailyCapQueries(LedgerFile):
    """How many messages went out since a moment, and when the n-th of them did."""

    def count_sent_since(self, since: float) -> int:
        """How many messages of any issue were sent after `since` (for `rate.per_day`)."""
        found = self._read(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND sent_at > ?",
            (time_text(since),),
        )
        return int(str(found[0][0])) if found else 0

    def nth_sent_since(self, since: float, n: int) -> float | None:
        """When the `n`-th (from 0) oldest message sent after `since` was sent, or None."""
        found = self._read(
            "SELECT sent_at FROM deliveries WHERE state = 'sent' AND sent_at > ? "
            "ORDER BY sent_at LIMIT 1 OFFSET ?",
            (time_text(since), max(0, n)),
        )
        return datetime.fromisoformat(str(found[0][0])).timestamp() if found else None
