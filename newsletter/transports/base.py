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

`sent`, `failed-temporary` (try again later) or `failed-permanent` (give up on this
address). It never raises for a delivery failure, so one bad address cannot
stop a run; only a misconfiguration it cannot work around (no credentials, a
rejected API key) raises `DeliveryError`, which stops the run with a clear
message instead of marking everyone as failed.

A transport class says what it can do (asked, never inferred from its
name): every one names its *route* for people (`TransportType.route`);
one that needs something shared by the run's workers, such as one OAuth2
token provider, opens them through `OpensPerRun.opener`; one whose provider
draws the email itself from a body in its own format (GOV.UK Notify) says
how to write that body (`SendsOwnBody.provider_body`), and the send run
attaches it to each message as `OutgoingMessage.provider_body`.

A transport that can check its set-up before any message exists (`Connects`:
reach the relay and log in, reach the API, create the outbox folder) is asked
to at the start of a run, before anyone is claimed, so a wrong host or
password stops the run with one message naming what to set and nobody is
marked failed or queued for a retry. Its class also says, without any
network, which settings are missing or still the sample's placeholders
(`TransportType.setup_problems`), for `validate` and the dry run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cached_property
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from newsletter.core.ratelimit import Clock
from newsletter.core.settings import Settings
from newsletter.render.message import message_bytes, parse_message

if TYPE_CHECKING:
    from newsletter.audience.lists import Recipient, Variant
    from newsletter.content.issue import Issue

# The ledger's own spelling of these states (`newsletter.ledger.deliveries.State`), so a result
# is recorded as it is, never translated.
DeliveryStatus = Literal["sent", "failed-temporary", "failed-permanent", "unknown"]


@dataclass(frozen=True)
class OutgoingMessage:
    """A complete message for one envelope recipient, kept as the bytes that go on the wire.

    SMTP and the outbox send the bytes as they are. API providers, which send
    parts and headers, read `message`: parsed from the bytes on first use, so
    a plain SMTP send never pays for the stdlib parser. `provider_body` is
    the recipient's body in the provider's own format, for a transport that
    `SendsOwnBody` (None for every other). `return_path` is the envelope
    sender signed for this message and recipient (`message.return_path_for`),
    which SMTP gives as MAIL FROM; None means the transport's own.
    `dot_free` says no line of `data` starts with "." (`MessageBuilder`
    guarantees it), so SMTP can send it after DATA without a dot-stuffing pass.
    """

    recipient: str
    message_id: str
    data: bytes
    provider_body: str | None = None
    return_path: str | None = None
    dot_free: bool = False

    @classmethod
    def of(
        cls, recipient: str, message: EmailMessage, provider_body: str | None = None
    ) -> OutgoingMessage:
        """A built message to send to `recipient`, under its own Message-ID."""
        return cls(recipient, str(message["Message-ID"]), message_bytes(message), provider_body)

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


@dataclass(frozen=True)
class Route:
    """How messages leave, in words a team would use, and what is still missing for it.

    `missing` names environment variables and settings (e.g.
    NEWSLETTER_OAUTH_CLIENT_SECRET, `notify.template_id`); nothing is checked
    over the network.
    """

    name: str
    missing: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """e.g. "Microsoft 365 SMTP with OAuth2; missing NEWSLETTER_OAUTH_CLIENT_SECRET"."""
        gap = f"; missing {', '.join(self.missing)}" if self.missing else ""
        return f"{self.name}{gap}"

    def describe(self) -> str:
        """The summary as one line: "route: ..."."""
        return f"route: {self.summary}"


@dataclass(frozen=True)
class ProviderBody:
    """How to write one person's body in a provider's own format, and what to call that version."""

    label: str  # e.g. "GOV.UK Notify version", for the preview
    render: Callable[[Variant, Recipient], str]


TransportFactory = Callable[[], "Transport"]


@runtime_checkable
class OpensPerRun(Protocol):
    """A transport class whose workers share something the run opens once (a token provider)."""

    def opener(self, settings: Settings, clock: Clock) -> TransportFactory:
        """A factory of new instances (one per worker) sharing what the run needs once."""
        ...


@runtime_checkable
class SendsOwnBody(Protocol):
    """A transport class whose provider draws the email from a body in its own format."""

    def provider_body(self, settings: Settings, issue: Issue) -> ProviderBody:
        """How to write each person's body for this issue (rendered once per variant)."""
        ...


@runtime_checkable
class Connects(Protocol):
    """A transport that can check, before sending anything, that it can work."""

    def connect(self) -> None:
        """Connect (and log in) now; ConfigError or DeliveryError, naming what to set, if not."""
        ...


@runtime_checkable
class ForksWithConnection(Protocol):
    """A transport whose open connection a forked sending process can carry on with.

    The run forks a child per connection (`delivery/sending_processes.py`);
    each process then forgets the connections that are not its own.
    """

    def forget_connection(self) -> None:
        """Close this process's copy of the connection without a word to the server."""
        ...


@runtime_checkable
class KeepsCopies(Protocol):
    """A transport that keeps what it "sends" somewhere a person can open (the outbox)."""

    def location(self, result: DeliveryResult) -> str | None:
        """Where the message of `result` was written, or None."""
        ...


def connect_now(transport: Transport) -> None:
    """Ask the transport to check that it can work, if it can check (see `Connects`)."""
    if isinstance(transport, Connects):
        transport.connect()


@dataclass(frozen=True)
class SettingProblem:
    """A setting a transport needs that is missing, or still the sample's placeholder.

    `key` is where it is written in newsletter.yaml (e.g. `smtp.host`), so
    `validate` can point at the line; `message` says what to set.
    """

    key: str
    message: str


# Names reserved for examples (RFC 2606, RFC 6761): no real relay or API lives there.
PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net")
PLACEHOLDER_TLDS = ("example", "invalid")


def is_placeholder_host(host: str | None) -> bool:
    """Whether `host` is a reserved example name, as the sample settings use."""
    name = (host or "").strip().rstrip(".").lower()
    if not name:
        return False
    if any(name == domain or name.endswith("." + domain) for domain in PLACEHOLDER_DOMAINS):
        return True
    return name.rsplit(".", 1)[-1] in PLACEHOLDER_TLDS


class TransportType(Protocol):
    """A transport class: how to open one from the settings, and its defaults.

    Asked instead of comparing transport names, so a new back-end is one
    class, its settings block and one entry in each list of the registry
    (`newsletter.transports`) and in `newsletter.transports.lookup.TRANSPORTS`.
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

    def route(self, settings: Settings) -> Route:
        """The route in a team's words, and what the settings still lack for it (no network)."""
        ...

    def setup_problems(self, settings: Settings) -> list[SettingProblem]:
        """Settings this transport needs that are missing or placeholders (no network)."""
        ...
