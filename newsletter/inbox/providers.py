"""Bounces and complaints read from a provider's API instead of a mailbox.

Postmark (Bounce API, postmarkapp.com/developer/api/bounce-api):
- `GET {base}/bounces?count=N&offset=M` with `Accept: application/json` and
  `X-Postmark-Server-Token`. `count` (at most 500) and `offset` are
  required, and count + offset may not pass 10,000. The answer is
  `{"TotalCount": n, "Bounces": [{"ID", "Type", "TypeCode", "Email",
  "BouncedAt", "Details", "Inactive", "MessageID", "Subject", ...}]}`, newest
  first, so paging stops at the first page holding nothing new.
- Our mapping of `Type`: HardBounce and BadEmailAddress are hard bounces;
  SpamComplaint a complaint; Transient, SoftBounce and DnsError soft
  bounces (recorded only); AutoResponder an auto-reply; Unsubscribe an
  unsubscribe request. Any other type (Blocked, SpamNotification,
  ManuallyDeactivated, Unknown, ...) is listed for a person, not acted on.
  Postmark's MessageID is its own, so Postmark events name no issue.

Mailjet (Messages API, dev.mailjet.com/email/reference/messages):
- `GET {base}/v3/REST/message` with HTTP Basic auth (API key : secret key)
  and `MessageStatus` (10 hard bounced, 9 soft bounced, 6 spam),
  `ShowContactAlt=true` (the recipient's address as `ContactAlt`),
  `ShowCustomID=true`, `Limit` (at most 1000) and `Offset`. The answer is
  `{"Count": n, "Data": [{"ID", "ContactAlt", "CustomID", "Status",
  "ArrivedAt", ...}], "Total": n}`. Our transport sends our Message-ID as
  the CustomID, so a Mailjet event names its issue.

GOV.UK Notify (`GET /v2/notifications?status=permanent-failure`, see
`transports.notify.permanent_failures`): a permanent failure means the
address does not exist or cannot take email: a hard bounce. Notify keeps
notifications for 7 days, newest first; paging stops at the first page
holding nothing new. Each notification's `reference` is our Message-ID, so
it names its issue; failures of emails others sent through the same Notify
service (a reference that is not ours) are left alone.

All: 401/403 mean the key is wrong (a clear error naming the variable to
check), 429 and 5xx are retried by `ApiClient`, then reported as "try again
later". Each record's key (`postmark:ID`, `mailjet:ID:status`,
`notify:ID`) is what the inbox tables remember, so a record is acted on once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from newsletter.core.errors import ConfigError, NewsletterError
from newsletter.core.settings import NOTIFY_API_KEY_ENV, ProviderSettings, Settings
from newsletter.inbox.classify import (
    Classification,
    EventKind,
    InboxEvent,
    MessageClass,
    issue_for_message_id,
)
from newsletter.transports.http import Answer, ApiClient, GaveUp, RetryPolicy, Sleep

POSTMARK_TOKEN_ENV = "NEWSLETTER_POSTMARK_TOKEN"
MAILJET_KEY_ENV = "NEWSLETTER_MAILJET_API_KEY"
MAILJET_SECRET_ENV = "NEWSLETTER_MAILJET_SECRET_KEY"
POSTMARK_PAGE = 500
POSTMARK_LIMIT = 10_000
MAILJET_PAGE = 1000
MAILJET_MAX_PAGES = 50
NOTIFY_FAILURE_DETAIL = (
    "GOV.UK Notify: permanent failure (the address does not exist or cannot take email)"
)

POSTMARK_KINDS: dict[str, EventKind] = {
    "HardBounce": "hard-bounce",
    "BadEmailAddress": "hard-bounce",
    "SpamComplaint": "complaint",
    "Transient": "soft-bounce",
    "SoftBounce": "soft-bounce",
    "DnsError": "soft-bounce",
    "AutoResponder": "auto-reply",
    "Unsubscribe": "unsubscribe",
}
# Mailjet MessageStatus filter values and what they mean for us.
MAILJET_STATUSES: dict[int, EventKind] = {10: "hard-bounce", 6: "complaint", 9: "soft-bounce"}
_CLASS_OF: dict[str, MessageClass] = {
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
    api = BOUNCE_APIS.get(name)
    if api is None:
        raise ConfigError(f"`{name}` has no bounce API here; use one of {', '.join(PROVIDERS)}")
    yield from api.poll(settings, is_known, message_id_domain, sleep, retry)


def provider_location(settings: Settings, name: str) -> str:
    """Where provider `name`'s API is, for the report's first line."""
    return BOUNCE_APIS[name].location(settings)


def _poll_postmark(
    provider: ProviderSettings,
    is_known: Callable[[str], bool],
    *,
    sleep: Sleep,
    retry: RetryPolicy | None,
) -> Iterator[ProviderRecord]:
    if provider.api_key is None:
        raise ConfigError(
            f"reading Postmark's bounces needs {POSTMARK_TOKEN_ENV} in the environment"
        )
    token = provider.api_key.reveal()
    client = ApiClient(
        "Postmark",
        provider.base_url,
        headers={"X-Postmark-Server-Token": token},
        secrets=[token],
        retry=retry,
        sleep=sleep,
        key_hint=POSTMARK_TOKEN_ENV,
    )
    try:
        offset = 0
        while offset < POSTMARK_LIMIT:
            count = min(POSTMARK_PAGE, POSTMARK_LIMIT - offset)
            body = _json_object(
                client, client.get_json("/bounces", {"count": count, "offset": offset})
            )
            bounces = body.get("Bounces")
            total = body.get("TotalCount")
            if not isinstance(bounces, list) or not isinstance(total, int):
                raise NewsletterError("Postmark's bounce list came back without Bounces/TotalCount")
            new = 0
            for bounce in bounces:
                record = _postmark_record(bounce)
                if record is None:
                    continue
                new += 0 if is_known(record.key) else 1
                yield record
            offset += len(bounces)
            if not bounces or offset >= total or new == 0:
                break
    finally:
        client.close()


def _postmark_record(bounce: Any) -> ProviderRecord | None:
    if not isinstance(bounce, dict) or "ID" not in bounce:
        return None
    bounce_type = str(bounce.get("Type") or "")
    address = str(bounce.get("Email") or "").strip() or None
    key = f"postmark:{bounce['ID']}"
    kind = POSTMARK_KINDS.get(bounce_type)
    detail = " ".join(str(bounce.get("Details") or bounce.get("Description") or "").split())[:300]
    if kind is None or address is None:
        classification = Classification(
            "unclassified", reason=f"a Postmark bounce of type {bounce_type or '?'}: {detail}"
        )
    else:
        event = InboxEvent(kind, address, action=bounce_type, detail=detail)
        classification = Classification(_CLASS_OF[kind], (event,))
    return ProviderRecord(key, address or "", str(bounce.get("Subject") or ""), classification)


def _poll_mailjet(
    provider: ProviderSettings,
    is_known: Callable[[str], bool],
    message_id_domain: str,
    *,
    sleep: Sleep,
    retry: RetryPolicy | None,
) -> Iterator[ProviderRecord]:
    if provider.api_key is None or provider.api_secret is None:
        raise ConfigError(
            f"reading Mailjet's bounces needs {MAILJET_KEY_ENV} and {MAILJET_SECRET_ENV} "
            "in the environment"
        )
    auth = (provider.api_key.reveal(), provider.api_secret.reveal())
    client = ApiClient(
        "Mailjet",
        provider.base_url,
        headers={},
        auth=auth,
        retry=retry,
        sleep=sleep,
        key_hint=f"{MAILJET_KEY_ENV} and {MAILJET_SECRET_ENV}",
    )
    try:
        for status, kind in MAILJET_STATUSES.items():
            for page in range(MAILJET_MAX_PAGES):
                params: dict[str, str | int] = {
                    "MessageStatus": status,
                    "ShowContactAlt": "true",
                    "ShowCustomID": "true",
                    "Limit": MAILJET_PAGE,
                    "Offset": page * MAILJET_PAGE,
                }
                body = _json_object(client, client.get_json("/v3/REST/message", params))
                data = body.get("Data")
                if not isinstance(data, list):
                    raise NewsletterError("Mailjet's message list came back without Data")
                for item in data:
                    record = _mailjet_record(item, status, kind, message_id_domain)
                    if record is not None:
                        yield record
                if len(data) < MAILJET_PAGE:
                    break
    finally:
        client.close()


def _mailjet_record(
    item: Any, status: int, kind: EventKind, message_id_domain: str
) -> ProviderRecord | None:
    if not isinstance(item, dict) or "ID" not in item:
        return None
    address = str(item.get("ContactAlt") or "").strip() or None
    key = f"mailjet:{item['ID']}:{status}"
    if address is None:
        return ProviderRecord(
            key, "", "", Classification("unclassified", reason="a Mailjet record with no address")
        )
    custom_id = str(item.get("CustomID") or "").strip()
    original = f"<{custom_id}>" if custom_id else None
    event = InboxEvent(
        kind,
        address,
        action=str(item.get("Status") or ""),
        issue_id=issue_for_message_id(original, message_id_domain),
        original_message_id=original,
    )
    classification = Classification(_CLASS_OF[kind], (event,))
    return ProviderRecord(key, address, str(item.get("Subject") or ""), classification)


def _json_object(client: ApiClient, answer: Answer | GaveUp) -> dict[str, Any]:
    if isinstance(answer, GaveUp):
        raise NewsletterError(f"{answer.detail}; nothing was changed, try again later")
    if answer.status != 200 or not isinstance(answer.body, dict):
        raise NewsletterError(
            f"{client.provider_name} answered HTTP {answer.status} ({answer.text}); nothing was "
            "changed"
        )
    return answer.body


def _poll_notify(
    settings: Settings,
    is_known: Callable[[str], bool],
    message_id_domain: str,
) -> Iterator[ProviderRecord]:
    from newsletter.transports.notify import permanent_failures

    notify = settings.notify
    if notify.api_key is None:
        raise ConfigError(
            f"reading GOV.UK Notify's permanent failures needs {NOTIFY_API_KEY_ENV} in the "
            "environment"
        )
    for failure in permanent_failures(
        notify.api_key,
        base_url=notify.base_url,
        seen=lambda f: is_known(_notify_key(f.notification_id)),
    ):
        issue_id = issue_for_message_id(failure.reference, message_id_domain)
        address = failure.email_address.strip()
        if issue_id is None or not address or not failure.notification_id:
            continue  # another team's email through the same Notify service: not ours
        event = InboxEvent(
            "hard-bounce",
            address,
            action="permanent-failure",
            detail=NOTIFY_FAILURE_DETAIL,
            issue_id=issue_id,
            original_message_id=failure.reference,
        )
        classification = Classification("bounce", (event,))
        yield ProviderRecord(_notify_key(failure.notification_id), address, "", classification)


def _notify_key(notification_id: str) -> str:
    return f"notify:{notification_id}"


@dataclass(frozen=True)
class BounceApi:
    """A provider's API that `newsletter inbox --provider NAME` reads."""

    location: Callable[[Settings], str]
    poll: Callable[
        [Settings, Callable[[str], bool], str, Sleep, RetryPolicy | None], Iterator[ProviderRecord]
    ]


BOUNCE_APIS: dict[str, BounceApi] = {
    "postmark": BounceApi(
        lambda settings: settings.providers["postmark"].base_url,
        lambda settings, known, domain, sleep, retry: _poll_postmark(
            settings.providers["postmark"], known, sleep=sleep, retry=retry
        ),
    ),
    "mailjet": BounceApi(
        lambda settings: settings.providers["mailjet"].base_url,
        lambda settings, known, domain, sleep, retry: _poll_mailjet(
            settings.providers["mailjet"], known, domain, sleep=sleep, retry=retry
        ),
    ),
    "notify": BounceApi(
        lambda settings: settings.notify.base_url,
        lambda settings, known, domain, sleep, retry: _poll_notify(settings, known, domain),
    ),
}
PROVIDERS: tuple[str, ...] = tuple(BOUNCE_APIS)
