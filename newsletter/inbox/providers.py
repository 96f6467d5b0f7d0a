"""Bounces and complaints read from a provider's API instead of a mailbox.

Each provider's API, what it answers and how its records are classified is
the provider's own (`transports/<provider>/feedback.py`); this module only
names the providers `newsletter inbox --provider NAME` can read and asks the
right one. All of them: 401/403 mean the key is wrong (a clear error naming
the variable to check), 429 and 5xx are retried, then reported as "try
again later". Each record's key (`postmark:ID`, `mailjet:ID:status`,
`notify:ID`) is what the inbox tables remember, so a record is acted on once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from newsletter.core.errors import ConfigError
from newsletter.core.settings import Settings
from newsletter.transports.feedback import BounceApi, PollRequest, ProviderRecord
from newsletter.transports.http import RetryPolicy, Sleep

__all__ = ["BOUNCE_APIS", "PROVIDERS", "ProviderRecord", "poll_provider", "provider_location"]


# Each provider's API is loaded only when asked for: the CLI lists the names at every start.
def _postmark() -> BounceApi:
    from newsletter.transports.postmark.feedback import BOUNCE_API

    return BOUNCE_API


def _mailjet() -> BounceApi:
    from newsletter.transports.mailjet.feedback import BOUNCE_API

    return BOUNCE_API


def _notify() -> BounceApi:
    from newsletter.transports.notify.feedback import BOUNCE_API

    return BOUNCE_API


BOUNCE_APIS: dict[str, Callable[[], BounceApi]] = {
    "postmark": _postmark,
    "mailjet": _mailjet,
    "notify": _notify,
}
PROVIDERS: tuple[str, ...] = tuple(BOUNCE_APIS)


def poll_provider(
    settings: Settings,
    name: str,
    is_known: Callable[[str], bool],
    *,
    message_id_domain: str,
    sleep: Sleep = time.sleep,
    retry: RetryPolicy | None = None,
) -> Iterator[ProviderRecord]:
    """The records of provider `name`, newest first where it sorts; `is_known` (already
    processed?) lets paging stop at the first page with nothing new. Known records are
    still yielded, so the report can count them as skipped."""
    load = BOUNCE_APIS.get(name)
    if load is None:
        raise ConfigError(f"`{name}` has no bounce API here; use one of {', '.join(PROVIDERS)}")
    yield from load().poll(PollRequest(settings, is_known, message_id_domain, sleep, retry))


def provider_location(settings: Settings, name: str) -> str:
    """Where provider `name`'s API is, for the report's first line."""
    return BOUNCE_APIS[name]().location(settings)
