"""A local stand-in for the GOV.UK Notify API, checking each request against its contract.

Fixture `notify_server`: a `FakeNotify` on 127.0.0.1 (a free port) for one
service (`SERVICE_ID`) with one API key (`API_KEY`, built the way Notify
builds keys: name, service id, secret) and one email template
(`TEMPLATE_ID`, subject `((subject))`, body `((body))`).

Every request must carry `Authorization: Bearer <JWT>`: the fake verifies
the JWT as Notify does (header `alg` HS256 and `typ` JWT, signature with the
key's secret, `iss` = the service id, `iat` within 30 seconds of now) and
answers 403 `AuthError` otherwise. `POST /v2/notifications/email` checks the
JSON body: only the documented fields, a valid `email_address`, our
template, both placeholders personalised (and no others), `reference` text,
an https `one_click_unsubscribe_url`. It answers 201 as Notify does and
records the notification (`server.sent`). `GET /v2/notifications` lists
notifications filtered by `status`, `template_type` and `reference`,
newest first, `page_size` (250) at a time with `older_than` paging.

Scenarios: `server.invalid_address(address)` (400 ValidationError),
`server.bounce(address)` (accepted, then `permanent-failure`),
`server.trial_mode(team=[...])` (400 BadRequestError for anyone else),
`server.respond(status, error, message, times)` (e.g. 429 RateLimitError,
429 TooManyRequestsError, 500) after the request is checked.
Requests that break the contract are recorded in `.violations` and fail the
test at teardown. The fake never prints the key.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from newsletter.core.settings import Secret
from tests.support.scripted import Script
from tests.support.tls import LocalHttpServer, Reply, Request, serve

SERVICE_ID = "0c1f6b5e-7a2d-4e8f-9b3c-5d6e7f8a9b0c"
KEY_SECRET = "3e9d2c1b-8a7f-4e6d-b5c4-a3b2c1d0e9f8"
API_KEY = f"newsletter_live-{SERVICE_ID}-{KEY_SECRET}"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"
EMAIL_FIELDS = frozenset(
    {"email_address", "template_id", "personalisation", "reference", "email_reply_to_id",
     "one_click_unsubscribe_url", "sanitise_content_for"}
)  # fmt: skip
PLACEHOLDERS = frozenset({"subject", "body"})
JWT_LEEWAY = 30


@dataclass
class _Scripted:
    status: int
    error: str
    message: str
    times: int


class FakeNotify:
    """Notify's v2 API for one service, one key and one email template."""

    name = "GOV.UK Notify"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []  # oldest first
        self.violations: list[str] = []
        self.requests: list[Request] = []
        self.page_size = 250
        self._invalid: set[str] = set()
        self._bounces: set[str] = set()
        self._team: set[str] | None = None
        self._script: Script[_Scripted] = Script()
        self._late_seconds = 0.0
        self._lock = threading.Lock()
        self._server = LocalHttpServer(self._handle)

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()

    def api_key(self) -> Secret:
        return Secret(API_KEY)

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEWSLETTER_TRANSPORT", "notify")
        monkeypatch.setenv("NEWSLETTER_NOTIFY_URL", self.url)
        monkeypatch.setenv("NEWSLETTER_NOTIFY_API_KEY", API_KEY)

    # -- scenarios -----------------------------------------------------------

    def invalid_address(self, address: str) -> None:
        self._invalid.add(address.lower())

    def bounce(self, address: str) -> None:
        """Accept emails to `address`, then mark them permanent-failure as the provider did."""
        self._bounces.add(address.lower())

    def trial_mode(self, team: list[str]) -> None:
        self._team = {a.lower() for a in team}

    def respond(self, status: int, error: str, message: str, times: int = 1) -> None:
        with self._lock:
            self._script.add(_Scripted(status, error, message, times))

    def add_notification(self, reference: str, email_address: str, status: str) -> None:
        """A notification sent earlier (by us or by someone else on the service)."""
        with self._lock:
            self.notifications.append(self._record(email_address, reference, status, ""))

    def sent_to(self) -> list[str]:
        with self._lock:
            return [n["email_address"] for n in self.sent]

    # -- the API ---------------------------------------------------------------

    def answer_late(self, seconds: float) -> None:
        """Take each email, then wait `seconds` before answering (longer than the client waits)."""
        self._late_seconds = seconds

    def _handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        problem = self._auth_problem(request.header("Authorization"))
        if problem:
            return _error(403, "AuthError", problem)
        if request.method == "POST" and request.path == "/v2/notifications/email":
            return self._send(request)
        if request.method == "GET" and request.path == "/v2/notifications":
            return self._list(request)
        self._violation(f"{request.method} {request.path}: not a Notify endpoint")
        return _error(404, "ResourceNotFound", "The requested URL was not found on the server.")

    def _auth_problem(self, authorization: str) -> str | None:
        if not authorization.startswith("Bearer "):
            return "Unauthorized: authentication token must be provided"
        token = authorization.removeprefix("Bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, KEY_SECRET, algorithms=["HS256"], options={"verify_iat": False}
            )
        except jwt.PyJWTError:
            return "Invalid token: API key not found"
        if header.get("alg") != "HS256" or header.get("typ") != "JWT":
            self._violation(f"the JWT header must be HS256/JWT, not {header}")
            return "Invalid token: algorithm used is not HS256"
        if claims.get("iss") != SERVICE_ID:
            return "Invalid token: API key not found"
        issued = claims.get("iat")
        if not isinstance(issued, int) or abs(time.time() - issued) > JWT_LEEWAY:
            return "Error: Your system clock must be accurate to within 30 seconds"
        return None

    def _send(self, request: Request) -> Reply:
        if "application/json" not in request.header("Content-Type"):
            self._violation("Content-Type must be application/json")
        body = request.json()
        if not isinstance(body, dict):
            self._violation("the body must be a JSON object")
            return _error(400, "ValidationError", "Invalid JSON")
        unexpected = set(body) - EMAIL_FIELDS
        if unexpected:
            self._violation(f"unexpected fields {sorted(unexpected)}")
            return _error(
                400,
                "ValidationError",
                f"Additional properties are not allowed ({', '.join(sorted(unexpected))} was "
                "unexpected)",
            )
        address = body.get("email_address")
        if not isinstance(address, str) or "@" not in address or " " in address.strip():
            self._violation("email_address must be an address")
            return _error(400, "ValidationError", "email_address Not a valid email address")
        if body.get("template_id") != TEMPLATE_ID:
            return _error(400, "BadRequestError", "Template not found")
        personalisation = body.get("personalisation")
        if not isinstance(personalisation, dict) or not all(
            isinstance(v, str) for v in personalisation.values()
        ):
            self._violation("personalisation must be an object of text")
            return _error(400, "ValidationError", "personalisation is not of type object")
        missing = sorted(PLACEHOLDERS - set(personalisation))
        if missing:
            self._violation(f"the template needs {missing}")
            return _error(400, "BadRequestError", f"Missing personalisation: {', '.join(missing)}")
        reference = body.get("reference")
        if reference is not None and (not isinstance(reference, str) or len(reference) > 1000):
            self._violation("reference must be text")
            return _error(400, "ValidationError", f"reference {reference} is too long")
        unsubscribe = body.get("one_click_unsubscribe_url")
        if unsubscribe is not None and not (
            isinstance(unsubscribe, str) and unsubscribe.startswith("https://")
        ):
            self._violation("one_click_unsubscribe_url must be an https URL")
            return _error(
                400, "ValidationError", "one_click_unsubscribe_url is not a valid https url"
            )
        if address.lower() in self._invalid:
            return _error(400, "ValidationError", "email_address Not a valid email address")
        if self._team is not None and address.lower() not in self._team:
            return _error(
                400,
                "BadRequestError",
                "Can't send to this recipient when service is in trial mode - see "
                "https://www.notifications.service.gov.uk/trial-mode",
            )
        scripted = self._script.next()
        if scripted is not None:
            return _error(scripted.status, scripted.error, scripted.message)
        status = "permanent-failure" if address.lower() in self._bounces else "delivered"
        record = self._record(address, reference, status, personalisation.get("subject", ""))
        with self._lock:
            self.notifications.append(record)
            self.sent.append({**body, "id": record["id"]})
        if self._late_seconds:
            time.sleep(self._late_seconds)  # the email is taken; the answer is lost
        return Reply(
            201,
            {
                "id": record["id"],
                "reference": reference,
                "content": {
                    "subject": personalisation["subject"],
                    "body": personalisation["body"],
                    "from_email": "childrens.mars@notifications.service.gov.uk",
                },
                "uri": f"{self.url}/v2/notifications/{record['id']}",
                "template": {
                    "id": TEMPLATE_ID,
                    "version": 3,
                    "uri": f"{self.url}/services/{SERVICE_ID}/templates/{TEMPLATE_ID}",
                },
                "scheduled_for": None,
            },
        )

    def _list(self, request: Request) -> Reply:
        query = {k: v[-1] for k, v in request.query.items()}
        known = {"status", "template_type", "reference", "older_than", "include_jobs"}
        if set(query) - known:
            self._violation(f"unknown filters {sorted(set(query) - known)}")
        with self._lock:
            newest_first = list(reversed(self.notifications))
        if "older_than" in query:
            ids = [n["id"] for n in newest_first]
            if query["older_than"] not in ids:
                return Reply(200, {"notifications": [], "links": {"current": request.path}})
            newest_first = newest_first[ids.index(query["older_than"]) + 1 :]
        wanted_status = query.get("status")
        statuses = (
            {"permanent-failure", "temporary-failure", "technical-failure"}
            if wanted_status == "failed"
            else {wanted_status}
        )
        page = [
            n
            for n in newest_first
            if (wanted_status is None or n["status"] in statuses)
            and n["type"] == query.get("template_type", n["type"])
            and n["reference"] == query.get("reference", n["reference"])
        ][: self.page_size]
        links = {"current": f"/v2/notifications?{_query_text(query)}"}
        if page:
            links["next"] = (
                f"/v2/notifications?{_query_text({**query, 'older_than': page[-1]['id']})}"
            )
        return Reply(200, {"notifications": page, "links": links})

    def _record(
        self, address: str, reference: str | None, status: str, subject: str
    ) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "reference": reference,
            "email_address": address,
            "phone_number": None,
            "type": "email",
            "status": status,
            "template": {"id": TEMPLATE_ID, "version": 3, "uri": f"/v2/template/{TEMPLATE_ID}"},
            "body": "",
            "subject": subject,
            "created_at": "2023-05-15T08:00:00.000000Z",
            "sent_at": "2023-05-15T08:00:01.000000Z",
            "completed_at": "2023-05-15T08:00:09.000000Z",
        }

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)


def _error(status: int, error: str, message: str) -> Reply:
    return Reply(status, {"status_code": status, "errors": [{"error": error, "message": message}]})


def _query_text(query: dict[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in query.items())


@pytest.fixture
def notify_server() -> Iterator[FakeNotify]:
    """A local GOV.UK Notify API on 127.0.0.1; see the module docstring."""
    yield from serve(FakeNotify())
