"""What a send run is asked to do, what it reports as it goes, and what it did.

`SendOptions` carries what the person chose on the command line (transport,
concurrency, rate, limit) to the plan and the run; `SendProgress` is what
the progress callback hears; `SendResult` is what a run did, as the CLI,
`--format json` and the dispatch log show it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from newsletter.core.errors import NewsletterError
from newsletter.core.ratelimit import Clock, RateLimiter
from newsletter.core.settings import Settings
from newsletter.delivery.daily_cap import CapStatus
from newsletter.ledger.deliveries import State
from newsletter.transports.base import Transport
from newsletter.transports.lookup import transport_type

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
