"""A real SMTP server (aiosmtpd) on 127.0.0.1 for delivery tests, with failure injection.

Fixtures:
- `smtp_server`: a plain server (no TLS, no AUTH) on a free port, started for
  the test and stopped after it.
- `smtp_server_factory(**controller_kwargs)`: start more, or TLS/AUTH ones;
  keyword arguments go to aiosmtpd's `Controller` (e.g. `tls_context=...,
  require_starttls=True`, `authenticator=...`, `auth_require_tls=False`).

Reading what arrived (thread-safe; the server runs in its own thread):
- `server.messages`: list of `ReceivedMessage(mail_from, rcpt_tos, data,
  message)`; `message` is an `EmailMessage` parsed with `policy.default`.
- `server.recipients()`: every RCPT address accepted with a message, in order.
- `server.by_recipient()`: {address (lower case): [ReceivedMessage, ...]}.
- `server.sessions`: how many connections sent at least one MAIL command.

Injecting failures (each call adds a rule; all rules can be combined;
`address="*"` means every recipient):
- `server.fail(address, 451)` / `server.fail(address, 550, stage="DATA")`:
  reply with that code at RCPT (default) or at the end of DATA for that
  address; `times=1` makes the failure happen once and then succeed (a 451
  that clears up), default is every time; `text=` sets the reply text
  (e.g. `fail("*", 550, stage="DATA", text="5.7.1 Message rejected as spam")`,
  a content filter refusing the message itself).
- `server.drop_connection_after(n)`: once `n` messages have been accepted,
  the next message's whole DATA is read and then the connection is closed
  without storing or answering (once). The client cannot tell this from
  `store_then_drop`: the outcome is unknown. With `stage="RCPT"` it closes
  at the next RCPT instead, before any of the message was sent (safe to retry).
- `server.store_then_drop(address, times=None)`: the message is stored (it
  will be delivered), then the connection is closed without the final reply.
- `server.slow_final_reply(address, seconds, times=None)`: the message is
  stored, and the final `250` comes only after `seconds`, later than the
  client's timeout if that is shorter.
- `server.reply_421_on(n)`: the n-th DATA command overall (1-based) gets
  `421` and the server closes the connection (once), as a relay does when
  it shuts down or limits a session.

It offers PIPELINING (RFC 2920) as Postfix and Exchange Online do, so the
client sends MAIL, RCPT and DATA in one write; `server.pipelining = False`
before connecting makes it a server that does not.

Pointing a project at it: `server.configure(monkeypatch)` sets
NEWSLETTER_TRANSPORT=smtp and NEWSLETTER_SMTP_HOST/PORT/SECURITY (none).
Its `settings()` returns `SmtpSettings` for constructing `SmtpTransport`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from newsletter.core.settings import Secret
from newsletter.transports.smtp.settings import SmtpSettings


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage


@dataclass
class _Failure:
    address: str
    code: int
    stage: str
    times: int | None
    text: str | None


@dataclass
class _AfterStoring:
    """What to do once a message for `address` is stored: drop the line, or answer late."""

    address: str
    action: str  # "drop" or "slow"
    seconds: float
    times: int | None


def _matches(rule_address: str, address: str) -> bool:
    return rule_address == "*" or rule_address == address.lower()


_TEXTS = {
    421: "4.3.0 Service not available, closing transmission channel",
    450: "4.2.0 Mailbox temporarily unavailable",
    451: "4.3.0 Try again later",
    452: "4.5.3 Too many recipients",
    550: "5.1.1 Mailbox does not exist",
    552: "5.3.4 Message too big",
    554: "5.7.1 Rejected",
}


class RecordingHandler:
    """aiosmtpd handler that records messages and misbehaves on request."""

    def __init__(self) -> None:
        self.pipelining = True
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._failures: list[_Failure] = []
        self._drop_after: int | None = None
        self._drop_stage = "DATA"
        self._after_storing: list[_AfterStoring] = []
        self._reply_421_on: int | None = None
        self._data_commands = 0
        self._sessions: set[int] = set()
        self._live: set[Any] = set()  # open server-side connections

    # -- test API ------------------------------------------------------------

    def fail(
        self,
        address: str,
        code: int,
        *,
        stage: str = "RCPT",
        times: int | None = None,
        text: str | None = None,
    ) -> None:
        if stage not in ("RCPT", "DATA"):
            raise ValueError("stage must be RCPT or DATA")
        with self._lock:
            self._failures.append(_Failure(address.lower(), code, stage, times, text))

    def drop_connection_after(self, accepted: int, *, stage: str = "DATA") -> None:
        if stage not in ("RCPT", "DATA"):
            raise ValueError("stage must be RCPT or DATA")
        with self._lock:
            self._drop_after = accepted
            self._drop_stage = stage

    def store_then_drop(self, address: str, *, times: int | None = None) -> None:
        with self._lock:
            self._after_storing.append(_AfterStoring(address.lower(), "drop", 0.0, times))

    def slow_final_reply(self, address: str, seconds: float, *, times: int | None = None) -> None:
        with self._lock:
            self._after_storing.append(_AfterStoring(address.lower(), "slow", seconds, times))

    def reply_421_on(self, data_command: int) -> None:
        with self._lock:
            self._reply_421_on = data_command

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def recipients(self) -> list[str]:
        return [r for m in self.messages for r in m.rcpt_tos]

    def by_recipient(self) -> dict[str, list[ReceivedMessage]]:
        found: dict[str, list[ReceivedMessage]] = {}
        for received in self.messages:
            for address in received.rcpt_tos:
                found.setdefault(address.lower(), []).append(received)
        return found

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._failures.clear()
            self._after_storing.clear()
            self._drop_after = self._reply_421_on = None
            self._data_commands = 0
            self._sessions.clear()

    # -- aiosmtpd hooks ------------------------------------------------------

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # this hook replaces aiosmtpd's own bookkeeping
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the closing "250 HELP"
        return responses

    def _planned(self, address: str, stage: str) -> str | None:
        """The reply for a planned failure of `address` at `stage`, if any."""
        with self._lock:
            for failure in self._failures:
                if _matches(failure.address, address) and failure.stage == stage:
                    if failure.times is not None:
                        if failure.times <= 0:
                            continue
                        failure.times -= 1
                    return f"{failure.code} {failure.text or _TEXTS.get(failure.code, 'Refused')}"
        return None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        with self._lock:
            self._sessions.add(id(session))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def _after_storing_rule(self, addresses: tuple[str, ...]) -> _AfterStoring | None:
        with self._lock:
            for rule in self._after_storing:
                if any(_matches(rule.address, a) for a in addresses) and rule.times != 0:
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _drop_due(self, stage: str) -> bool:
        """Whether the planned dropped connection happens now, at `stage` (once)."""
        with self._lock:
            due = (
                self._drop_after is not None
                and self._drop_stage == stage
                and len(self._messages) >= self._drop_after
            )
            if due:
                self._drop_after = None
            return due

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._drop_due("RCPT"):
            server.transport.close()
            # connection_lost() cancels this handler; nothing of the message was sent.
            await asyncio.sleep(30)
        reply = self._planned(address, "RCPT")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self._data_commands += 1
            closing = self._reply_421_on == self._data_commands
            if closing:
                self._reply_421_on = None
        if self._drop_due("DATA"):
            server.transport.close()
            # connection_lost() cancels this handler; nothing is accepted.
            await asyncio.sleep(30)
        if closing:
            # The reply is written before this callback runs; then the line goes dead.
            asyncio.get_running_loop().call_soon(server.transport.close)
            return f"421 {_TEXTS[421]}"
        for address in envelope.rcpt_tos:
            reply = self._planned(address, "DATA")
            if reply is not None:
                return reply
        data = bytes(envelope.original_content or envelope.content)
        parsed = message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            number = len(self._messages) + 1
            self._messages.append(
                ReceivedMessage(envelope.mail_from, tuple(envelope.rcpt_tos), data, parsed)
            )
        rule = self._after_storing_rule(tuple(envelope.rcpt_tos))
        if rule is not None and rule.action == "drop":
            server.transport.close()  # stored, so it will be delivered; the client never hears
            await asyncio.sleep(30)
        if rule is not None and rule.action == "slow":
            await asyncio.sleep(rule.seconds)  # cancelled if the client gives up first
        return f"250 2.0.0 Ok: queued as TEST{number:06d}"


class SmtpTestServer(RecordingHandler):
    """A running aiosmtpd server: the handler's test API plus where to reach it."""

    host = "127.0.0.1"

    def __init__(self, **controller_kwargs: Any) -> None:
        super().__init__()
        self.security = "none"
        if controller_kwargs.get("ssl_context") is not None:
            self.security = "ssl"
        elif controller_kwargs.get("tls_context") is not None:
            self.security = "starttls"
        self._controller = _start(self, controller_kwargs)
        self._stopped = False
        self.port: int = self._controller.port

    def settings(
        self, *, username: str | None = None, password: str | None = None, **changes: Any
    ) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": username,
            "password": Secret(password) if password else None,
            "timeout_seconds": 10.0,
        }
        values.update(changes)
        return SmtpSettings(**values)

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_HOST", self.host)
        monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(self.port))
        monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", self.security)

    def stop(self) -> None:
        """Stop the server (safe to call twice, e.g. to test an unreachable relay)."""
        if self._stopped:
            return
        self._stopped = True
        # Close connections a client left open, so no socket outlives the test.
        loop = self._controller.loop
        for protocol in list(self._live):
            for transport in (protocol.transport, getattr(protocol, "_original_transport", None)):
                if transport is not None:
                    loop.call_soon_threadsafe(transport.abort)
        deadline = time.monotonic() + 2
        while self._live and time.monotonic() < deadline:
            time.sleep(0.01)
        self._controller.stop()


class _TrackedSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd's protocol, telling the handler which connections are open."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.event_handler._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler._live.discard(self)
        super().connection_lost(error)


class _Controller(Controller):  # type: ignore[misc]
    def factory(self) -> SMTP:
        return _TrackedSMTP(self.handler, **self.SMTP_kwargs)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(handler: RecordingHandler, controller_kwargs: dict[str, Any]) -> Controller:
    last_error: Exception | None = None
    for _ in range(5):  # another process may grab the free port between probe and bind
        controller = _Controller(
            handler,
            hostname="127.0.0.1",
            port=_free_port(),
            server_hostname="smtp.test",
            **controller_kwargs,
        )
        try:
            controller.start()
        except Exception as error:  # aiosmtpd re-raises the bind error from its thread
            last_error = error
            continue
        return controller
    raise RuntimeError(f"could not start the test SMTP server: {last_error}")


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpTestServer]]:
    """Start SMTP servers on demand (TLS, AUTH, ...); all are stopped after the test."""
    started: list[SmtpTestServer] = []

    def start(**controller_kwargs: Any) -> SmtpTestServer:
        server = SmtpTestServer(**controller_kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    """A plain SMTP server on 127.0.0.1 that records every message; see the module docstring."""
    return smtp_server_factory()
