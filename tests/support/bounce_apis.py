"""Local stand-ins for the providers' bounce and complaint APIs, checking the documented contract.

Fixtures:
- `postmark_bounces`: `GET /bounces` as Postmark's Bounce API documents it
  (postmarkapp.com/developer/api/bounce-api): `X-Postmark-Server-Token` and
  `Accept: application/json` required, `count` (1-500) and `offset`
  required, count + offset at most 10,000; answers `{TotalCount, Bounces}`
  newest first. `server.add(...)` adds a bounce.
- `mailjet_messages`: `GET /v3/REST/message` as Mailjet's Messages API
  documents it (dev.mailjet.com/email/reference/messages): HTTP Basic auth,
  `MessageStatus` filter, `ShowContactAlt`, `Limit` (at most 1000) and
  `Offset`; answers `{Count, Data, Total}`. `server.add(...)` adds a message.

Both reuse `tests.support.providers.FakeProvider` (scripted 429/5xx answers
with `respond`, `.requests`, `.violations` failing the test at teardown).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.providers import (
    MAILJET_KEY,
    MAILJET_SECRET,
    POSTMARK_TOKEN,
    FakeProvider,
)

POSTMARK_TYPES = {
    "HardBounce": 1, "Transient": 2, "Unsubscribe": 16, "Subscribe": 32, "AutoResponder": 64,
    "AddressChange": 128, "DnsError": 256, "SpamNotification": 512, "OpenRelayTest": 1024,
    "Unknown": 2048, "SoftBounce": 4096, "VirusNotification": 8192,
    "ChallengeVerification": 16384, "BadEmailAddress": 100000, "SpamComplaint": 100001,
    "ManuallyDeactivated": 100002, "Unconfirmed": 100003, "Blocked": 100006,
    "SMTPApiError": 100007, "InboundError": 100008, "DMARCPolicy": 100009,
}  # fmt: skip
# Mailjet MessageStatus values and the Status text its messages carry.
MAILJET_STATUS_TEXT = {
    0: "processed", 1: "queued", 2: "sent", 3: "opened", 4: "clicked", 5: "bounce",
    6: "spam", 7: "unsub", 8: "blocked", 9: "softbounced", 10: "hardbounced", 11: "deferred",
}  # fmt: skip


def _query(path: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(path)
    return parts.path, parse_qs(parts.query, keep_blank_values=True)


class FakePostmarkBounces(FakeProvider):
    """Postmark's `GET /bounces`."""

    token = POSTMARK_TOKEN

    def __post_init__(self) -> None:
        super().__post_init__()
        self.bounces: list[dict[str, Any]] = []

    def add(self, email: str, bounce_type: str, details: str = "", **extra: Any) -> int:
        """Add a bounce (newer than every earlier one); returns its ID."""
        bounce_id = 692560000 + len(self.bounces)
        self.bounces.insert(
            0,
            {
                "RecordType": "Bounce",
                "ID": bounce_id,
                "Type": bounce_type,
                "TypeCode": POSTMARK_TYPES[bounce_type],
                "Name": bounce_type,
                "MessageID": f"2c1b63fe-43f2-4db5-91b0-{bounce_id:012d}",
                "ServerID": 23,
                "MessageStream": "broadcast",
                "Description": details,
                "Details": details,
                "Email": email,
                "From": "comms@example.org",
                "BouncedAt": f"2023-05-18T09:{len(self.bounces) % 60:02d}:00.0000000-04:00",
                "DumpAvailable": True,
                "Inactive": bounce_type in ("HardBounce", "SpamComplaint", "BadEmailAddress"),
                "CanActivate": True,
                "Subject": "News Update, May 2023",
                **extra,
            },
        )
        return bounce_id

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEWSLETTER_POSTMARK_URL", self.url)
        monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", self.token)

    def answer(
        self, method: str, path: str, headers: dict[str, str], payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        route, query = _query(path)
        if method != "GET" or route != "/bounces":
            self.violation(f"{method} {route}: Postmark's bounce list is GET /bounces")
            return 404, {"ErrorCode": 0, "Message": "Not found"}, {}
        if headers.get("X-Postmark-Server-Token") != self.token:
            return 401, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}, {}  # fmt: skip
        if "application/json" not in headers.get("Accept", ""):
            self.violation("Accept must be application/json")
        try:
            count = int(query["count"][0])
            offset = int(query["offset"][0])
        except (KeyError, ValueError):
            self.violation(f"count and offset are required integers, got {query}")
            return 422, {"ErrorCode": 605, "Message": "count and offset are required."}, {}
        if not 1 <= count <= 500 or offset < 0 or count + offset > 10_000:
            self.violation(f"count={count} offset={offset} is outside Postmark's limits")
            return 422, {"ErrorCode": 605, "Message": "Invalid count or offset."}, {}
        unknown = set(query) - {"count", "offset", "type", "inactive", "emailFilter", "tag",
                                "messageID", "fromdate", "todate", "messagestream"}  # fmt: skip
        if unknown:
            self.violation(f"unknown query parameters {sorted(unknown)}")
        return (
            200,
            {"TotalCount": len(self.bounces), "Bounces": self.bounces[offset : offset + count]},
            {},
        )

    def _commit(self, payload: Any, body: Any = None) -> None:
        pass  # reading changes nothing


class FakeMailjetMessages(FakeProvider):
    """Mailjet's `GET /v3/REST/message`."""

    key = MAILJET_KEY
    secret = MAILJET_SECRET

    def __post_init__(self) -> None:
        super().__post_init__()
        self.messages: list[dict[str, Any]] = []

    def add(self, email: str, status: int, custom_id: str = "") -> int:
        message_id = 288230376151711744 + len(self.messages)
        self.messages.append(
            {
                "ID": message_id,
                "ArrivedAt": "2023-05-18T08:00:01Z",
                "AttemptCount": 1,
                "ContactID": 1_000_000 + len(self.messages),
                "ContactAlt": email,
                "CustomID": custom_id,
                "MessageSize": 41_234,
                "SenderID": 52,
                "SpamassassinScore": 0,
                "StatePermanent": status == 10,
                "Status": MAILJET_STATUS_TEXT[status],
                "Subject": "News Update, May 2023",
                "_status": status,
            }
        )
        return message_id

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEWSLETTER_MAILJET_URL", self.url)
        monkeypatch.setenv("NEWSLETTER_MAILJET_API_KEY", self.key)
        monkeypatch.setenv("NEWSLETTER_MAILJET_SECRET_KEY", self.secret)

    def answer(
        self, method: str, path: str, headers: dict[str, str], payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        route, query = _query(path)
        if method != "GET" or route != "/v3/REST/message":
            self.violation(f"{method} {route}: Mailjet's message list is GET /v3/REST/message")
            return 404, self.error_body(404), {}
        expected = "Basic " + base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {"ErrorIdentifier": "x", "StatusCode": 401,
                         "ErrorMessage": "API key authentication/authorization failure."}, {}  # fmt: skip
        known = {"Campaign", "Contact", "CustomID", "Destination", "FromTS", "FromType",
                 "MessageState", "MessageStatus", "PlanSubscription", "SenderID",
                 "ShowContactAlt", "ShowCustomID", "ShowSubject", "ToTS", "Limit", "Offset",
                 "Sort", "countOnly"}  # fmt: skip
        unknown = set(query) - known
        if unknown:
            self.violation(f"unknown filters {sorted(unknown)}")
        try:
            limit = int(query.get("Limit", ["10"])[0])
            offset = int(query.get("Offset", ["0"])[0])
            status = int(query["MessageStatus"][0]) if "MessageStatus" in query else None
        except ValueError:
            self.violation(f"Limit, Offset and MessageStatus must be integers, got {query}")
            return 400, self.error_body(400), {}
        if not 0 < limit <= 1000:
            self.violation(f"Limit={limit}: Mailjet returns at most 1000 per call")
        if status is not None and status not in MAILJET_STATUS_TEXT:
            self.violation(f"MessageStatus={status} is not one of Mailjet's values")
        show_address = query.get("ShowContactAlt", ["false"])[0].lower() == "true"
        matching = [m for m in self.messages if status is None or m["_status"] == status]
        page = []
        for message in matching[offset : offset + limit]:
            item = {k: v for k, v in message.items() if not k.startswith("_")}
            if not show_address:
                item.pop("ContactAlt")
            page.append(item)
        return 200, {"Count": len(page), "Data": page, "Total": len(matching)}, {}

    def _commit(self, payload: Any, body: Any = None) -> None:
        pass


def _serve(server: FakeProvider) -> Iterator[FakeProvider]:
    try:
        yield server
    finally:
        server.stop()
    assert not server.violations, f"requests broke the {server.name} contract: {server.violations}"


@pytest.fixture
def postmark_bounces() -> Iterator[FakePostmarkBounces]:
    """A local Postmark Bounce API on 127.0.0.1; see the module docstring."""
    server = FakePostmarkBounces(name="Postmark bounces")
    yield from _serve(server)  # type: ignore[misc]


@pytest.fixture
def mailjet_messages() -> Iterator[FakeMailjetMessages]:
    """A local Mailjet Messages API on 127.0.0.1; see the module docstring."""
    server = FakeMailjetMessages(name="Mailjet messages")
    yield from _serve(server)  # type: ignore[misc]
