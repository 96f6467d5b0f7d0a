"""What a provider tells us after sending: the shapes every provider's `feedback` module fills.

Two ways in, each provider's own (`<provider>/feedback.py`):
- polling its API for bounces and complaints (`newsletter inbox --provider
  NAME`): a `BounceApi` yields `ProviderRecord`s, already classified, each
  under a key (`postmark:ID`, ...) the inbox tables remember so a record is
  acted on once;
- its webhooks (`newsletter serve`): a reader turns one parsed JSON body,
  hostile until proven otherwise, into `Suppression`s, or raises
  `WebhookPayloadError` when the body is not the shape the provider documents.
`inbox.providers` and `inbox.webhooks` name the providers of each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.core.errors import NewsletterError, WebhookPayloadError
from newsletter.inbox.classify import Classification, EventKind, MessageClass
from newsletter.transports.http import Answer, ApiClient, GaveUp, RetryPolicy, Sleep

if TYPE_CHECKING:
    from newsletter.core.settings import Settings

# What each kind of event is, as the inbox counts it.
CLASS_OF: dict[EventKind, MessageClass] = {
    "hard-bounce": "bounce",
    "soft-bounce": "bounce",
    "complaint": "complaint",
    "auto-reply": "auto-reply",
    "unsubscribe": "unsubscribe",
}


@dataclass(frozen=True)
class ProviderRecord:
    """One provider record, already classified."""

    key: str
    sender: str
    subject: str
    classification: Classification


@dataclass(frozen=True)
class PollRequest:
    """What a poll is given: the settings, which records are known, and how to retry."""

    settings: Settings
    is_known: Callable[[str], bool]  # already processed? paging stops at a page of known ones
    message_id_domain: str  # our Message-IDs' domain, to tell our issues from others' mail
    sleep: Sleep
    retry: RetryPolicy | None


@dataclass(frozen=True)
class BounceApi:
    """A provider's API that `newsletter inbox --provider NAME` reads."""

    location: Callable[[Settings], str]
    poll: Callable[[PollRequest], Iterator[ProviderRecord]]


@dataclass(frozen=True)
class Suppression:
    """One address a provider says must not be mailed again, with our reason word."""

    address: str
    reason: str  # hard-bounce, complaint, unsubscribed or manual (SUPPRESSION_REASONS)
    provider: str


WebhookReader = Callable[[Any], list[Suppression]]


def text_field(event: Mapping[str, Any], field: str) -> str:
    """A field of a webhook event as stripped text; "" when absent or not text."""
    value = event.get(field)
    return value.strip() if isinstance(value, str) else ""


def one_suppression(
    event: Mapping[str, Any], field: str, reason: str, provider: str
) -> list[Suppression]:
    """The address in `field` as a suppression; WebhookPayloadError when it has none."""
    address = text_field(event, field)
    if not address:
        raise WebhookPayloadError(f"a {provider} {reason} event has no `{field}`")
    return [Suppression(address, reason, provider)]


def json_object(client: ApiClient, answer: Answer | GaveUp) -> dict[str, Any]:
    """A polled page as a JSON object, or NewsletterError saying nothing was changed."""
    if isinstance(answer, GaveUp):
        raise NewsletterError(f"{answer.detail}; nothing was changed, try again later")
    if answer.status != 200 or not isinstance(answer.body, dict):
        raise NewsletterError(
            f"{client.provider_name} answered HTTP {answer.status} ({answer.text}); nothing was "
            "changed"
        )
    return answer.body
