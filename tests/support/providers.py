"""Local stand-ins for the Postmark and Mailjet APIs, checking each request against the contract.

Fixtures:
- `postmark_server`: a `FakePostmark` on 127.0.0.1 (a free port) that serves
  `POST /email/batch` as Postmark documents it.
- `mailjet_server`: a `FakeMailjet` serving `POST /v3.1/send`.
- `make_outgoing(addresses_or_count)`: real messages from `build_message`
  for the sample issue, as `OutgoingMessage`s, for any transport test.

Each fake checks method, path, auth header, content type, JSON shape,
batch size and required fields. A request that breaks the contract gets the
error the provider would give (422/400) and is recorded in `.violations`;
the fixture fails the test at teardown if any were recorded, unless the
test cleared them (`server.violations.clear()`) after asserting on them.

Scripting answers (consumed in order, one per request; the contract is
still checked): `server.respond(status, body=None, headers=None, times=1)`.
Without a script a valid request gets 200. Per-address failures inside a
200 (Postmark) or a 400 with per-message results (Mailjet):
`server.fail_address(address, ...)`. Answers that never arrive, after the
fake has accepted the messages (so they count in `sent_to()`):
`server.accept_then_hang_up(times=1)` closes the connection without
answering; `server.accept_then_stall(seconds, times=1)` answers only after
`seconds` (later than the client's timeout, if that is shorter). `server.requests` records every
request (`path`, `headers`, `json`); `server.sent_to()` lists the addresses
the fake accepted. `server.configure(monkeypatch)` points a project at it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from newsletter.audience.lists import Recipient
from newsletter.core.project import Project
from newsletter.core.settings import Secret
from newsletter.render.message import PersonalisedEmail, build_message
from newsletter.transports.base import OutgoingMessage
from newsletter.transports.provider_settings import ProviderSettings
from tests.support.scripted import Script

POSTMARK_TOKEN = "pm-server-token-5f2b9c1e-test"
MAILJET_KEY = "mj-public-key-8d1e"
MAILJET_SECRET = "mj-secret-key-c0ffee77-test"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class _Scripted:
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class FakeProvider:
    """Shared machinery: an HTTP server thread, a script of answers, and records."""

    name: str = "fake"
    requests: list[RecordedRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._script: Script[_Scripted] = Script()
        self._failures: dict[str, Any] = {}
        self._unanswered: list[tuple[str, float]] = []  # ("hang-up" | "stall", seconds)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                provider._handle(self)

            def do_GET(self) -> None:
                provider._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def respond(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with this status (after checking the contract)."""
        with self._lock:
            self._script.add(_Scripted(status, body, headers or {}, times))

    def accept_then_hang_up(self, times: int = 1) -> None:
        """Accept the next `times` requests, then close the connection without answering."""
        with self._lock:
            self._unanswered += [("hang-up", 0.0)] * times

    def accept_then_stall(self, seconds: float, times: int = 1) -> None:
        """Accept the next `times` requests, then answer only after `seconds`."""
        with self._lock:
            self._unanswered += [("stall", seconds)] * times

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        headers = {k: v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, handler.path, headers, payload))
        before = len(self.violations)
        status, body, extra = self.answer(handler.command, handler.path, headers, payload)
        # A script only replaces the answer to a request that was valid and authorised.
        valid = status not in (401, 404) and len(self.violations) == before
        scripted = self._script.next() if valid else None
        if scripted is not None:
            if scripted.status != 200 or scripted.body is not None:
                body = (
                    scripted.body if scripted.body is not None else self.error_body(scripted.status)
                )
            status = scripted.status
            extra = scripted.headers
            if status == 200:
                self._commit(payload, body)
        elif status == 200 or (status == 400 and isinstance(body, dict) and "Messages" in body):
            self._commit(payload, body)
        with self._lock:
            unanswered = self._unanswered.pop(0) if self._unanswered else None
        if unanswered is not None and unanswered[0] == "hang-up":
            handler.close_connection = True  # the messages are accepted; the answer never comes
            return
        if unanswered is not None:
            time.sleep(unanswered[1])
        data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up waiting (accept_then_stall)

    def violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    # Provider-specific parts -------------------------------------------------

    def answer(
        self, method: str, path: str, headers: dict[str, str], payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        return {"Message": f"scripted {status}"}

    def _commit(self, payload: Any, body: Any = None) -> None:
        raise NotImplementedError

    def sent_to(self) -> list[str]:
        with self._lock:
            return [m["to"] for m in self.accepted]


class FakePostmark(FakeProvider):
    """Postmark's batch endpoint (postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails)."""

    token = POSTMARK_TOKEN
    max_batch = 500
    fields = frozenset(
        {"From", "To", "Cc", "Bcc", "Subject", "Tag", "HtmlBody", "TextBody", "ReplyTo",
         "Headers", "TrackOpens", "TrackLinks", "Metadata", "Attachments", "MessageStream",
         "InlineCss"}
    )  # fmt: skip

    def fail_address(self, address: str, code: int = 406, message: str | None = None) -> None:
        """In a 200 answer, give this address a per-message ErrorCode."""
        text = message or {
            406: "You tried to send to recipient(s) that have been marked as inactive. "
            "Found inactive addresses: {address}. Inactive recipients are ones that have "
            "generated a hard bounce, a spam complaint, or a manual suppression.",
            300: "Invalid 'To' address: '{address}'.",
        }.get(code, "Error {code}")
        with self._lock:
            self._failures[address.lower()] = (code, text.format(address=address, code=code))

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEWSLETTER_TRANSPORT", "postmark")
        monkeypatch.setenv("NEWSLETTER_POSTMARK_URL", self.url)
        monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", self.token)

    def provider_settings(self, **options: str) -> ProviderSettings:
        return ProviderSettings("postmark", self.url, Secret(self.token), None, options)

    def error_body(self, status: int) -> Any:
        if status == 422:
            return {"ErrorCode": 300, "Message": "Invalid email request"}
        if status == 429:
            return {"ErrorCode": 429, "Message": "Rate limit exceeded"}
        return {"ErrorCode": 0, "Message": f"HTTP {status}"}

    def answer(
        self, method: str, path: str, headers: dict[str, str], payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if method != "POST" or path != "/email/batch":
            self.violation(f"{method} {path}: Postmark's batch endpoint is POST /email/batch")
            return 404, {"ErrorCode": 0, "Message": "Not found"}, {}
        if headers.get("X-Postmark-Server-Token") != self.token:
            # A wrong token is a scenario tests create on purpose, not a contract breach.
            return (
                401,
                {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."},
                {},
            )
        if "application/json" not in headers.get("Content-Type", ""):
            self.violation("Content-Type must be application/json")
        if "application/json" not in headers.get("Accept", ""):
            self.violation("Accept must be application/json")
        if not isinstance(payload, list) or not payload:
            self.violation("the body must be a non-empty JSON array of messages")
            return 422, {"ErrorCode": 402, "Message": "Received invalid JSON input."}, {}
        if len(payload) > self.max_batch:
            self.violation(f"a batch of {len(payload)} messages is over Postmark's 500")
            return 422, {"ErrorCode": 410, "Message": "Too many batch messages."}, {}
        for index, item in enumerate(payload):
            problem = self._message_problem(item)
            if problem:
                self.violation(f"message {index}: {problem}")
                return 422, {"ErrorCode": 300, "Message": f"Invalid email request: {problem}"}, {}
        results = []
        for item in payload:
            to = _address_of(item["To"])
            with self._lock:
                failure = self._failures.get(to.lower())
            if failure:
                results.append({"ErrorCode": failure[0], "Message": failure[1]})
            else:
                results.append(
                    {
                        "ErrorCode": 0,
                        "Message": "OK",
                        "MessageID": str(uuid.uuid4()),
                        "SubmittedAt": "2023-05-18T09:00:00.0000000-04:00",
                        "To": item["To"],
                    }
                )
        return 200, results, {}

    def _message_problem(self, item: Any) -> str | None:
        if not isinstance(item, dict):
            return "each message must be a JSON object"
        unknown = set(item) - self.fields
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        for name in ("From", "To", "Subject"):
            if not isinstance(item.get(name), str) or not item[name].strip():
                return f"{name} is required"
        if "," in item["To"] and "<" not in item["To"]:
            return "one recipient per message, so recipients never see each other"
        if not (item.get("TextBody") or item.get("HtmlBody")):
            return "provide either TextBody or HtmlBody or both"
        headers = item.get("Headers", [])
        if not isinstance(headers, list) or not all(
            isinstance(h, dict)
            and set(h) == {"Name", "Value"}
            and all(isinstance(v, str) for v in h.values())
            for h in headers
        ):
            return "Headers must be a list of {Name, Value} strings"
        if "MessageStream" in item and not isinstance(item["MessageStream"], str):
            return "MessageStream must be text"
        return None

    def _commit(self, payload: Any, body: Any = None) -> None:
        if not isinstance(payload, list):
            return
        answers = body if isinstance(body, list) else [{"ErrorCode": 0}] * len(payload)
        with self._lock:
            for item, result in zip(payload, answers):
                if result.get("ErrorCode") == 0:
                    self.accepted.append({"to": _address_of(item["To"]), "message": item})


class FakeMailjet(FakeProvider):
    """Mailjet's Send API v3.1 (dev.mailjet.com/email/guides/send-api-v31)."""

    key = MAILJET_KEY
    secret = MAILJET_SECRET
    max_batch = 50
    fields = frozenset(
        {"From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "TextPart", "HTMLPart", "TemplateID",
         "TemplateLanguage", "Variables", "Attachments", "InlinedAttachments", "Headers",
         "CustomID", "EventPayload", "CustomCampaign", "DeduplicateCampaign", "URLTags",
         "TrackOpens", "TrackClicks", "Priority"}
    )  # fmt: skip

    def fail_address(
        self,
        address: str,
        status_code: int = 400,
        message: str | None = None,
        related_to: str = "To[0].Email",
    ) -> None:
        """Give this address's message an error in the per-message results (the call answers 400).

        `related_to` is the field Mailjet blames (`ErrorRelatedTo`): the
        recipient's address by default, or e.g. "From.Email" or "HTMLPart".
        """
        with self._lock:
            self._failures[address.lower()] = (
                status_code,
                message or f'"{address}" is an invalid email address.',
                related_to,
            )

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEWSLETTER_TRANSPORT", "mailjet")
        monkeypatch.setenv("NEWSLETTER_MAILJET_URL", self.url)
        monkeypatch.setenv("NEWSLETTER_MAILJET_API_KEY", self.key)
        monkeypatch.setenv("NEWSLETTER_MAILJET_SECRET_KEY", self.secret)

    def provider_settings(self, **options: str) -> ProviderSettings:
        return ProviderSettings("mailjet", self.url, Secret(self.key), Secret(self.secret), options)

    def error_body(self, status: int) -> Any:
        return {
            "ErrorIdentifier": str(uuid.uuid4()),
            "StatusCode": status,
            "ErrorMessage": "Too many requests" if status == 429 else f"HTTP {status}",
        }

    def answer(
        self, method: str, path: str, headers: dict[str, str], payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if method != "POST" or path != "/v3.1/send":
            self.violation(f"{method} {path}: Mailjet's Send API v3.1 is POST /v3.1/send")
            return 404, self.error_body(404), {}
        expected = "Basic " + base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        if headers.get("Authorization") != expected:
            return (
                401,
                {
                    "ErrorIdentifier": str(uuid.uuid4()),
                    "StatusCode": 401,
                    "ErrorMessage": "API key authentication/authorization failure. You may be "
                    "unauthorized to access the API or your API key may be expired.",
                },
                {},
            )
        if "application/json" not in headers.get("Content-Type", ""):
            self.violation("Content-Type must be application/json")
        messages = payload.get("Messages") if isinstance(payload, dict) else None
        if not isinstance(messages, list) or not messages:
            self.violation('the body must be {"Messages": [...]} with at least one message')
            return (
                400,
                {"ErrorCode": "mj-0002", "StatusCode": 400, "ErrorMessage": "Malformed JSON"},
                {},
            )
        if len(messages) > self.max_batch:
            self.violation(f"{len(messages)} messages in one call is over Mailjet's 50")
            return 400, {"ErrorCode": "mj-0003", "StatusCode": 400,
                         "ErrorMessage": "Too many messages in one call"}, {}  # fmt: skip
        for index, item in enumerate(messages):
            problem = self._message_problem(item)
            if problem:
                self.violation(f"message {index}: {problem}")
                return 400, {"Messages": [{"Status": "error", "Errors": [{
                    "ErrorIdentifier": str(uuid.uuid4()), "ErrorCode": "send-0003",
                    "StatusCode": 400, "ErrorMessage": problem,
                    "ErrorRelatedTo": [f"Messages[{index}]"]}]}]}, {}  # fmt: skip
        results = []
        any_error = False
        for item in messages:
            to = item["To"][0]["Email"]
            with self._lock:
                failure = self._failures.get(to.lower())
            if failure:
                any_error = True
                results.append({"Status": "error", "Errors": [{
                    "ErrorIdentifier": str(uuid.uuid4()), "ErrorCode": "mj-0013",
                    "StatusCode": failure[0], "ErrorMessage": failure[1],
                    "ErrorRelatedTo": [failure[2]]}]})  # fmt: skip
            else:
                results.append({
                    "Status": "success", "CustomID": item.get("CustomID", ""),
                    "To": [{"Email": to, "MessageUUID": str(uuid.uuid4()),
                            "MessageID": 288230376000000000 + len(results),
                            "MessageHref": "https://api.mailjet.com/v3/REST/message/1"}],
                    "Cc": [], "Bcc": []})  # fmt: skip
        return (400 if any_error else 200), {"Messages": results}, {}

    def _message_problem(self, item: Any) -> str | None:
        if not isinstance(item, dict):
            return "each message must be a JSON object"
        unknown = set(item) - self.fields
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        if not _contact_ok(item.get("From")):
            return "From must be {Email, Name}"
        to = item.get("To")
        if not isinstance(to, list) or len(to) != 1 or not _contact_ok(to[0]):
            return "To must be a list of exactly one {Email, Name} (recipients must not see each other)"
        if "ReplyTo" in item and not _contact_ok(item["ReplyTo"]):
            return "ReplyTo must be {Email, Name}"
        if not isinstance(item.get("Subject"), str) or not item["Subject"]:
            return "Subject is required"
        if not (item.get("TextPart") or item.get("HTMLPart")):
            return "TextPart and/or HTMLPart is required"
        headers = item.get("Headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            return "Headers must be an object of text values"
        if "CustomID" in item and not isinstance(item["CustomID"], str):
            return "CustomID must be text"
        return None

    def _commit(self, payload: Any, body: Any = None) -> None:
        messages = payload.get("Messages") if isinstance(payload, dict) else None
        if not isinstance(messages, list):
            return
        answers = body.get("Messages") if isinstance(body, dict) else None
        answers = answers or [{"Status": "success"}] * len(messages)
        with self._lock:
            for item, result in zip(messages, answers):
                if result.get("Status") == "success":
                    self.accepted.append({"to": item["To"][0]["Email"], "message": item})


def _contact_ok(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) <= {"Email", "Name"}
        and isinstance(value.get("Email"), str)
        and "@" in value["Email"]
        and all(isinstance(v, str) for v in value.values())
    )


def _address_of(field_value: str) -> str:
    if "<" in field_value:
        return field_value.rsplit("<", 1)[1].rstrip(">").strip()
    return field_value.strip()


def _serve(server: FakeProvider) -> Iterator[FakeProvider]:
    try:
        yield server
    finally:
        server.stop()
    assert not server.violations, f"requests broke the {server.name} contract: {server.violations}"


@pytest.fixture
def postmark_server() -> Iterator[FakePostmark]:
    """A local Postmark batch API on 127.0.0.1; see the module docstring."""
    server = FakePostmark(name="Postmark")
    yield from _serve(server)


@pytest.fixture
def mailjet_server() -> Iterator[FakeMailjet]:
    """A local Mailjet Send API v3.1 on 127.0.0.1; see the module docstring."""
    server = FakeMailjet(name="Mailjet")
    yield from _serve(server)


@pytest.fixture
def make_outgoing(project: Project) -> Callable[..., list[OutgoingMessage]]:
    """Build real messages (via `build_message`) for the sample issue, one per address.

    Call with a list of addresses, or a count for `reader1@example.org`, ...
    """
    issue = project.load_issue("2023-05-panel-reports")

    def make(
        addresses: list[str] | int, *, subject: str | None = None, shared: bool = False
    ) -> list[OutgoingMessage]:
        """`shared=True` builds one message and reuses it under each envelope address,
        which is quick for batch-size tests (build_message costs a few ms each)."""
        if isinstance(addresses, int):
            addresses = [f"reader{n}@example.org" for n in range(1, addresses + 1)]
        outgoing: list[OutgoingMessage] = []
        for n, address in enumerate(addresses, 1):
            if shared and outgoing:
                first = outgoing[0]
                outgoing.append(
                    OutgoingMessage(address, f"<{n}.{first.message_id[1:]}", first.data)
                )
                continue
            recipient = Recipient(email=address, name=f"Reader Nº{n}")
            email = PersonalisedEmail(
                subject=subject or issue.subject,
                html=f"<html><body><p>Dear Reader Nº{n}</p><p>{issue.title}</p></body></html>",
                text=f"Dear Reader Nº{n}\n\n{issue.title}\n",
            )
            message = build_message(project.settings, issue, recipient, email)
            outgoing.append(OutgoingMessage.of(address, message))
        return outgoing

    return make
