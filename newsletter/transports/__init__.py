"""Delivery back-ends behind one small interface (see `base.Transport`), and the list of them.

`TRANSPORTS` maps each name a user can choose (`transport:` in
newsletter.yaml, `--transport` on the command line) to its class, imported
only when asked for, so `newsletter validate` never pays for requests or
smtplib. The class itself says how to open it from the settings and what it
can do (see `base.TransportType`); nothing else looks at the name.

`open_transport` returns a NEW instance on every call: the send run opens
one per worker thread, so each holds its own connection.
"""

from __future__ import annotations

from collections.abc import Callable

from newsletter.errors import ConfigError
from newsletter.settings import Settings
from newsletter.transports.base import (
    DeliveryResult,
    OutgoingMessage,
    SettingProblem,
    Transport,
    TransportType,
)

__all__ = [
    "TRANSPORTS",
    "TRANSPORT_NAMES",
    "DeliveryResult",
    "OutgoingMessage",
    "SettingProblem",
    "Transport",
    "TransportType",
    "describe_transport",
    "open_transport",
    "setup_problems",
    "transport_type",
]


def _outbox() -> TransportType:
    from newsletter.transports.outbox import OutboxTransport

    return OutboxTransport


def _smtp() -> TransportType:
    from newsletter.transports.smtp import SmtpTransport

    return SmtpTransport


def _postmark() -> TransportType:
    from newsletter.transports.postmark import PostmarkTransport

    return PostmarkTransport


def _mailjet() -> TransportType:
    from newsletter.transports.mailjet import MailjetTransport

    return MailjetTransport


TRANSPORTS: dict[str, Callable[[], TransportType]] = {
    "outbox": _outbox,
    "smtp": _smtp,
    "postmark": _postmark,
    "mailjet": _mailjet,
}
TRANSPORT_NAMES: tuple[str, ...] = tuple(TRANSPORTS)


def transport_type(name: str) -> TransportType:
    """The class of the transport called `name`."""
    load = TRANSPORTS.get(name)
    if load is None:
        raise ConfigError(
            f"`{name}` is not a transport; choose one of {', '.join(TRANSPORT_NAMES)}"
        )
    return load()


def open_transport(settings: Settings, name: str | None = None) -> Transport:
    """A new transport named `name` (default: the `transport` setting), set up from settings."""
    return transport_type(name or settings.transport).from_settings(settings)


def describe_transport(settings: Settings, name: str | None = None) -> str:
    """Where messages would go, in words, for `--verbose`; secrets are named, never shown."""
    return transport_type(name or settings.transport).describe(settings)


def setup_problems(settings: Settings, name: str | None = None) -> list[SettingProblem]:
    """What the transport `name` (default: the setting) still needs set up; no network used."""
    return transport_type(name or settings.transport).setup_problems(settings)
