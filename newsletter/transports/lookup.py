"""Delivery back-ends behind one small interface (see `base.Transport`), opened by name.

`TRANSPORTS` maps each name a user can choose (`transport:` in
newsletter.yaml, `--transport` on the command line; the names and the
settings each declares are the registry, `newsletter.transports`) to its
class, imported only when asked for, so `newsletter validate` never pays
for requests or smtplib. The class itself says how to open it from the settings and what it
can do (see `base.TransportType`); nothing else looks at the name.

`open_transport` returns a NEW instance on every call. A send run asks for
`transport_opener` once and calls it once per worker thread, so each worker
holds its own connection while sharing what the run opens once (the
Microsoft 365 routes' token provider, on the run's clock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from newsletter.core.errors import ConfigError
from newsletter.core.ratelimit import Clock, SystemClock
from newsletter.core.settings import Settings
from newsletter.transports import TRANSPORT_NAMES
from newsletter.transports.base import (
    DeliveryResult,
    OpensPerRun,
    OutgoingMessage,
    ProviderBody,
    Route,
    SendsOwnBody,
    SettingProblem,
    Transport,
    TransportFactory,
    TransportType,
)

if TYPE_CHECKING:
    from newsletter.content.issue import Issue

__all__ = [
    "TRANSPORTS",
    "TRANSPORT_NAMES",
    "DeliveryResult",
    "OutgoingMessage",
    "ProviderBody",
    "Route",
    "SettingProblem",
    "Transport",
    "TransportFactory",
    "TransportType",
    "describe_transport",
    "open_transport",
    "provider_body",
    "route_of",
    "setup_problems",
    "transport_opener",
    "transport_type",
]


def _outbox() -> TransportType:
    from newsletter.transports.outbox import OutboxTransport

    return OutboxTransport


def _smtp() -> TransportType:
    from newsletter.transports.smtp.send import SmtpTransport

    return SmtpTransport


def _postmark() -> TransportType:
    from newsletter.transports.postmark.send import PostmarkTransport

    return PostmarkTransport


def _mailjet() -> TransportType:
    from newsletter.transports.mailjet.send import MailjetTransport

    return MailjetTransport


def _graph() -> TransportType:
    from newsletter.transports.graph.send import GraphTransport

    return GraphTransport


def _notify() -> TransportType:
    from newsletter.transports.notify.send import NotifyTransport

    return NotifyTransport


# Each name in the registry's `TRANSPORT_NAMES`, and how to load its class.
TRANSPORTS: dict[str, Callable[[], TransportType]] = {
    "outbox": _outbox,
    "smtp": _smtp,
    "postmark": _postmark,
    "mailjet": _mailjet,
    "graph": _graph,
    "notify": _notify,
}


def transport_type(name: str) -> TransportType:
    """The class of the transport called `name`."""
    load = TRANSPORTS.get(name)
    if load is None:
        raise ConfigError(
            f"`{name}` is not a transport; choose one of {', '.join(TRANSPORT_NAMES)}"
        )
    return load()


def transport_opener(
    settings: Settings, name: str | None = None, *, clock: Clock | None = None
) -> TransportFactory:
    """A factory of new transports named `name`, one per worker, for one run.

    What the workers share (a token provider) is made here, once, on `clock`;
    a missing credential raises ConfigError now, before anything is sent.
    """
    kind = transport_type(name or settings.transport)
    if isinstance(kind, OpensPerRun):
        return kind.opener(settings, clock or SystemClock())
    return lambda: kind.from_settings(settings)


def open_transport(settings: Settings, name: str | None = None) -> Transport:
    """A new transport named `name` (default: the `transport` setting), set up from settings."""
    return transport_opener(settings, name)()


def describe_transport(settings: Settings, name: str | None = None) -> str:
    """Where messages would go, in words, for `--verbose`; secrets are named, never shown."""
    return transport_type(name or settings.transport).describe(settings)


def route_of(settings: Settings, name: str | None = None) -> Route:
    """The route messages would take, and what is missing for it (see `base.Route`)."""
    return transport_type(name or settings.transport).route(settings)


def provider_body(settings: Settings, issue: Issue, name: str | None = None) -> ProviderBody | None:
    """How to write each person's body for a transport that sends its own format, else None."""
    kind = transport_type(name or settings.transport)
    return kind.provider_body(settings, issue) if isinstance(kind, SendsOwnBody) else None


def setup_problems(settings: Settings, name: str | None = None) -> list[SettingProblem]:
    """What the transport `name` (default: the setting) still needs set up; no network used."""
    return transport_type(name or settings.transport).setup_problems(settings)
