"""Delivery back-ends behind one small interface (see `base.Transport`).

`open_transport` returns a NEW instance on every call: the dispatcher opens
one per worker thread, so each holds its own connection.
"""

from __future__ import annotations

from newsletter.errors import ConfigError
from newsletter.settings import TRANSPORTS, Settings
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Transport

__all__ = ["DeliveryResult", "OutgoingMessage", "Transport", "open_transport"]


def open_transport(settings: Settings, name: str | None = None) -> Transport:
    """A new transport named `name` (default: the `transport` setting), set up from settings."""
    chosen = name or settings.transport
    # Imported here so `newsletter validate` never pays for requests or smtplib.
    if chosen == "outbox":
        from newsletter.transports.outbox import OutboxTransport

        return OutboxTransport(settings.outbox_dir)
    if chosen == "smtp":
        from newsletter.transports.smtp import SmtpTransport

        return SmtpTransport(settings.smtp, settings.from_address)
    if chosen == "postmark":
        from newsletter.transports.postmark import PostmarkTransport

        return PostmarkTransport(settings.providers["postmark"])
    if chosen == "mailjet":
        from newsletter.transports.mailjet import MailjetTransport

        return MailjetTransport(settings.providers["mailjet"])
    raise ConfigError(f"`{chosen}` is not a transport; choose one of {', '.join(TRANSPORTS)}")
