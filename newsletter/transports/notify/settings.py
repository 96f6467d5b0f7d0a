"""GOV.UK Notify's settings: the `notify` block of newsletter.yaml, its key from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.core.fields import Field
from newsletter.core.setting_parts import (
    BlockContext,
    Secret,
    SettingsBlock,
    https,
    secret,
    uuid_or_none,
)

if TYPE_CHECKING:
    from newsletter.core.settings import Settings

API_KEY_ENV = "NEWSLETTER_NOTIFY_API_KEY"
URL_ENV = "NEWSLETTER_NOTIFY_URL"
DEFAULT_URL = "https://api.notifications.service.gov.uk"
TEMPLATE_SETTING = "notify.template_id"


@dataclass(frozen=True)
class NotifySettings:
    """GOV.UK Notify: the `((subject))`/`((body))` template, the reply-to, the key."""

    template_id: str | None = None
    reply_to_id: str | None = None
    api_key: Secret | None = None
    base_url: str = DEFAULT_URL

    def missing(self) -> list[str]:
        """What is still to be set before Notify can send."""
        missing = [] if self.api_key else [API_KEY_ENV]
        return missing + ([] if self.template_id else [TEMPLATE_SETTING])

    @classmethod
    def of(cls, settings: Settings) -> NotifySettings:
        """This block of the project's settings."""
        return settings.block("notify", cls)


def _build(values: Mapping[str, Any], context: BlockContext) -> NotifySettings:
    return NotifySettings(**values)


NOTIFY_BLOCK = SettingsBlock(
    "notify",
    (
        Field(TEMPLATE_SETTING, uuid_or_none("f33517ff-2a88-4f6e-b855-c550268ce08a"), default=None),
        Field(
            "notify.reply_to_id", uuid_or_none("8e222534-7f05-4972-86e3-17c5d9f894e2"), default=None
        ),
        Field("notify.api_key", secret, default=None, env=API_KEY_ENV, in_file=False),
        Field("notify.base_url", https, default=DEFAULT_URL, env=URL_ENV),
    ),
    _build,
)
