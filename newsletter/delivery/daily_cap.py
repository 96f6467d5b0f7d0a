"""Daily caps that carry a large list over several days: `rate.per_day`.

Microsoft 365 lets a mailbox send to 10,000 recipients in any 24 hours (a
rolling window, not a calendar day); GOV.UK Notify allows 250,000 a day.
`rate.per_day` is counted the same way Microsoft counts: the messages the
ledger says were sent in the 24 hours before now, across every issue in the
ledger, since the limit is the mailbox's, not an issue's. A run that
reaches it stops cleanly, leaving the rest `pending`; the next run once the
window has room again (the oldest of those sends is 24 hours old) carries
on, and the ledger still sends nobody twice.

Times are the run's clock (`ledger.record(now=...)` stamps each send with
it), so a test, or `dispatch --now`, can move through days without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.core.ratelimit import Clock
from newsletter.ledger.deliveries import DeliverySummary, Ledger, open_ledger_if_exists

WINDOW_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class CapStatus:
    """Where the daily cap stands at one moment."""

    per_day: int
    sent: int  # in the 24 hours before the moment, every issue
    reopens_at: float | None  # when one more may go, once the cap is reached

    @property
    def reached(self) -> bool:
        return self.sent >= self.per_day

    @property
    def left(self) -> int:
        return max(0, self.per_day - self.sent)


def cap_status(ledger: Ledger, per_day: int, now: float) -> CapStatus:
    """Count the sends of the last 24 hours and, at the cap, when the window next has room."""
    since = now - WINDOW_SECONDS
    sent = ledger.count_sent_since(since)
    reopens_at = None
    if sent >= per_day:
        # The window has room once all but per_day - 1 of its sends have left it.
        oldest_to_leave = ledger.nth_sent_since(since, sent - per_day)
        reopens_at = None if oldest_to_leave is None else oldest_to_leave + WINDOW_SECONDS
    return CapStatus(per_day, sent, reopens_at)


def read_cap_status(ledger_path: Path, per_day: int | None, now: datetime) -> CapStatus | None:
    """The cap at `now` from the ledger file, read-only; None with no cap or no ledger yet."""
    if per_day is None:
        return None
    ledger = open_ledger_if_exists(ledger_path)
    if ledger is None:
        return None
    with ledger:
        return cap_status(ledger, per_day, now.timestamp())


class DailyAllowance:
    """How many more messages a send run may claim before `rate.per_day` is reached.

    Used by the run's main thread only. It counts the ledger once, then
    takes each claim off what is left; when that runs out and nothing of the
    run is still in flight, it counts again (the window moves, and rows that
    failed were never sent), and only then says the cap is `reached`.
    """

    def __init__(self, ledger: Ledger, per_day: int | None, clock: Clock) -> None:
        self.ledger = ledger
        self.per_day = per_day
        self.clock = clock
        self.reached: CapStatus | None = None
        self._left: int | None = None

    def grant(self, wanted: int, *, busy: bool) -> int:
        """How many of `wanted` rows may be claimed now; 0 once the cap is reached.

        `busy`: some claimed rows are not recorded yet, so the ledger's count
        is not the whole story and is not read again until they are.
        """
        if self.per_day is None or wanted <= 0:
            return wanted
        if self._left is None or (self._left <= 0 and not busy):
            status = cap_status(self.ledger, self.per_day, self.clock.time())
            self._left = status.left
            self.reached = status if status.reached else None
        granted = min(wanted, self._left)
        self._left -= granted
        return granted


def continues_after(reopens_at: float, zone: ZoneInfo, now: float) -> str:
    """When sending can carry on, as a person reads it: "09:00" or "09:00 tomorrow"."""
    when = datetime.fromtimestamp(reopens_at, zone)
    today = datetime.fromtimestamp(now, zone).date()
    if when.date() == today:
        return f"{when:%H:%M}"
    if when.date() == today + timedelta(days=1):
        return f"{when:%H:%M} tomorrow"
    return f"{when:%H:%M} on {when:%a} {when.day} {when:%B}"


def cap_reached_line(status: CapStatus, zone: ZoneInfo, now: float) -> str:
    """e.g. "daily cap reached: 10,000 sent in the last 24 hours (rate.per_day); ..."."""
    after = (
        f"; the rest continue after {continues_after(status.reopens_at, zone, now)}"
        if status.reopens_at is not None
        else ""
    )
    return (
        f"daily cap reached: {status.sent:,} sent in the last 24 hours "
        f"(rate.per_day {status.per_day:,}){after}"
    )


def sending_detail(summary: DeliverySummary, status: CapStatus, zone: ZoneInfo, now: float) -> str:
    """The schedule's words for an issue held back by the cap: "sending: 10,000 of 14,200, ..."."""
    sent = summary.counts.get("sent", 0)
    total = summary.total - summary.counts.get("suppressed", 0)
    after = (
        f", continues after {continues_after(status.reopens_at, zone, now)}"
        if status.reopens_at is not None
        else ""
    )
    return f"sending: {sent:,} of {total:,}{after} (daily cap of {status.per_day:,} reached)"
