"""What GOV.UK Notify tells us after sending: the emails it could not deliver, for good.

`GET /v2/notifications?status=permanent-failure&template_type=email` (the
official client's `get_all_notifications`) lists them, 250 a page, newest
first, `older_than` for the next page; Notify keeps them for 7 days, so poll
within that time after a send. A permanent failure means the address does
not exist or cannot take email: a hard bounce. Each notification's
`reference` is our Message-ID, so it names its issue; failures of emails
others sent through the same Notify service (a reference that is not ours)
are left alone. Paging stops at the first page holding nothing new.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from notifications_python_client.errors import APIError

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.setting_parts import Secret
from newsletter.inbox.classify import Classification, InboxEvent, issue_for_message_id
from newsletter.transports.feedback import BounceApi, PollRequest, ProviderRecord
from newsletter.transports.notify.send import error_of, notify_client
from newsletter.transports.notify.settings import API_KEY_ENV, DEFAULT_URL, NotifySettings

FAILURE_DETAIL = (
    "GOV.UK Notify: permanent failure (the address does not exist or cannot take email)"
)


@dataclass(frozen=True)
class NotifyFailure:
    """A message Notify accepted and later could not deliver for good."""

    reference: str
    email_address: str
    notification_id: str
    completed_at: str | None


def permanent_failures(
    api_key: Secret,
    *,
    base_url: str = DEFAULT_URL,
    timeout: float = 30.0,
    seen: Callable[[NotifyFailure], bool] | None = None,
) -> Iterator[NotifyFailure]:
    """Emails Notify found permanently undeliverable, newest first.

    Pages through `permanent-failure` email notifications until Notify has no
    older ones, or until a page holds only failures `seen` says were read before.
    """
    client = notify_client(api_key, base_url, timeout)
    older_than: str | None = None
    try:
        while True:
            try:
                page = client.get_all_notifications(
                    status="permanent-failure", template_type="email", older_than=older_than
                )
            except APIError as error:
                kind, text = error_of(error)
                raise DeliveryError(
                    f"GOV.UK Notify would not list failed emails (HTTP {error.status_code}, "
                    f"{kind}: {text}); check {API_KEY_ENV}"
                ) from None
            notifications = page.get("notifications") if isinstance(page, dict) else None
            if not notifications:
                return
            failures = [_failure(item) for item in notifications]
            new = sum(not (seen is not None and seen(failure)) for failure in failures)
            yield from failures
            older_than = str(notifications[-1].get("id") or "")
            if not older_than or new == 0:
                return
    finally:
        client.request_session.close()


def _failure(item: dict[str, object]) -> NotifyFailure:
    completed = item.get("completed_at")
    return NotifyFailure(
        str(item.get("reference") or ""),
        str(item.get("email_address") or ""),
        str(item.get("id") or ""),
        completed if isinstance(completed, str) else None,
    )


def poll_failures(request: PollRequest) -> Iterator[ProviderRecord]:
    """Notify's permanent failures of our own emails, as hard bounces naming their issue."""
    notify = NotifySettings.of(request.settings)
    if notify.api_key is None:
        raise ConfigError(
            f"reading GOV.UK Notify's permanent failures needs {API_KEY_ENV} in the environment"
        )
    for failure in permanent_failures(
        notify.api_key,
        base_url=notify.base_url,
        seen=lambda f: request.is_known(_key(f.notification_id)),
    ):
        issue_id = issue_for_message_id(failure.reference, request.message_id_domain)
        address = failure.email_address.strip()
        if issue_id is None or not address or not failure.notification_id:
            continue  # another team's email through the same Notify service: not ours
        event = InboxEvent(
            "hard-bounce",
            address,
            action="permanent-failure",
            detail=FAILURE_DETAIL,
            issue_id=issue_id,
            original_message_id=failure.reference,
        )
        classification = Classification("bounce", (event,))
        yield ProviderRecord(_key(failure.notification_id), address, "", classification)


def _key(notification_id: str) -> str:
    return f"notify:{notification_id}"


BOUNCE_API = BounceApi(lambda settings: NotifySettings.of(settings).base_url, poll_failures)
