"""Provider webhooks read into suppressions: which address to stop mailing, and why.

Each provider's webhook body, and what in it we act on, is the provider's
own (`transports/<provider>/feedback.py`: pure functions from a parsed JSON
body to `Suppression`s); this module names the providers whose webhooks
`serve.py` takes. `serve.py` checks the credentials, writes suppressed.csv
and records the events.
"""

from __future__ import annotations

from collections.abc import Mapping

from newsletter.core.errors import WebhookPayloadError
from newsletter.transports.feedback import Suppression, WebhookReader
from newsletter.transports.mailjet.feedback import suppressions as mailjet_suppressions
from newsletter.transports.postmark.feedback import suppressions as postmark_suppressions

__all__ = [
    "PROVIDERS",
    "READERS",
    "Suppression",
    "WebhookPayloadError",
    "mailjet_suppressions",
    "postmark_suppressions",
]

READERS: Mapping[str, WebhookReader] = {
    "postmark": postmark_suppressions,
    "mailjet": mailjet_suppressions,
}
PROVIDERS: tuple[str, ...] = tuple(READERS)
