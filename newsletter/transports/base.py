"""The one small interface every delivery back-end implements.

A transport takes complete messages and says, per message, what happened:
`sent`, `failed-temporary` (try again later), `failed-permanent` (refused for a
reason about *this recipient*: give up on this address) or `unknown` (the
whole message was handed over and then no answer came: it may have arrived,
so it must not be sent again without being asked). It never raises for one
recipient's failure, so one bad address cannot stop a run.

A refusal that is not about the recipient (the relay's content filter, a
message too big, a refused sender, a suspended account, a rejected API key)
stops the run instead of marking everyone as failed: the transport raises
`DeliveryError`, or, when earlier messages of the batch were already handed
over, returns their results and marks the rest `halted` (not handed over;
`detail` says why), and the run stops after recording what was handed over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cached_property
from typing import Literal, Protocol

from newsletter.message import message_bytes, parse_message
from newsletter.settings import Settings

# The ledger's own spelling of these states (`newsletter.ledger.State`), so a result
# is recorded as it is, never translated.
DeliveryStatus = Literal["sent", "failed-temporary", "failed-permanent", "unknown"]


@dataclass(frozen=True)
class OutgoingMessage:
    """A complete message for one envelope recipient, kept as the bytes that go on the wire.

    SMTP and the outbox send the bytes as they are. API providers, which send
    parts and headers, read `message`: parsed from the bytes on first use, so
    a plain SMTP send never pays for the stdlib parser.
    """

    recipient: str
    message_id: str
    data: bytes

    @classmethod
    def of(cls, recipient: str, message: EmailMessage) -> OutgoingMessage:
        """A built message to send to `recipient`, under its own Message-ID."""
        return cls(recipient, str(message["Message-ID"]), message_bytes(message))

    @cached_property
    def message(self) -> EmailMessage:
        return parse_message(self.data)

    def as_bytes(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one message. `detail` is safe to show and store: no secrets."""

    recipient: str
    message_id: str
    status: DeliveryStatus
    detail: str = ""
    provider_id: str | None = None
    retry_after: float | None = None  # seconds the provider asked us to wait
    # Not handed over because the transport stopped (`detail` says why): the run
    # gives the row back untouched and stops.
    halted: bool = False
    # A permanent failure that says nothing against the address (our relay cannot
    # carry it, e.g. no SMTPUTF8 for a non-ASCII mailbox): recorded, never suppressed.
    address_at_fault: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "sent"


class Transport(Protocol):
    """A delivery back-end. One instance per worker: instances are not shared by threads.

    `batch_size` is the most messages one `send_batch` call takes.
    `sends_batch_in_one_request` is true when a whole batch goes out in one
    request (an HTTP batch API), so its results all arrive together; a
    transport that hands messages over one at a time can be given fewer, so
    each result is recorded soon after it is known.
    """

    name: str
    batch_size: int
    sends_batch_in_one_request: bool

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Deliver each message; one result per message, in the same order."""
        ...

    def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


class TransportType(Protocol):
    """A transport class: how to open one from the settings, and its defaults.

    Asked instead of comparing transport names, so a new back-end is one
    class and one entry in `newsletter.transports.TRANSPORTS`.
    """

    def from_settings(self, settings: Settings) -> Transport:
        """A new instance configured from the project's settings."""
        ...

    def default_concurrency(self, settings: Settings) -> int:
        """Connections to use in parallel when `--concurrency` is not given."""
        ...

    def describe(self, settings: Settings) -> str:
        """Where messages would go, in words; secrets are named, never shown."""
        ...
