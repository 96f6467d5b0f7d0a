"""Provider webhooks on `newsletter serve`: Postmark and Mailjet events, behind basic auth.

The payloads are the providers' documented examples (Postmark's webhook pages,
Mailjet's Event API guide), posted over real HTTP to the subprocess server.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from newsletter.core.errors import WebhookPayloadError
from newsletter.inbox.webhooks import Suppression, mailjet_suppressions, postmark_suppressions
from newsletter.ledger.list_events import read_list_events
from tests.support.project import enable_one_click
from tests.support.serve import WEBHOOK_USERS, ServeProcess, start_serve, stop_serve

POSTMARK_HARD_BOUNCE = {
    "RecordType": "Bounce",
    "MessageStream": "broadcast",
    "ID": 42,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "Test bounce details",
    "Email": "gone@example.org",
    "From": "comms@example.org",
    "BouncedAt": "2023-05-15T13:28:10.2735393-04:00",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "News Update",
    "Metadata": {},
}
POSTMARK_SOFT_BOUNCE = {**POSTMARK_HARD_BOUNCE, "Type": "SoftBounce", "TypeCode": 4096}
POSTMARK_COMPLAINT = {
    "RecordType": "SpamComplaint",
    "MessageStream": "outbound",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Email": "angry@example.org",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
}


def postmark_change(
    recipient: str, reason: str | None, origin: str, suppress: bool = True
) -> dict[str, Any]:
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 123456,
        "MessageStream": "broadcast",
        "ChangedAt": "2020-02-01T10:53:34.416071Z",
        "Recipient": recipient,
        "Origin": origin,
        "SuppressSending": suppress,
        "SuppressionReason": reason,
        "Tag": None,
        "Metadata": {},
    }


def mailjet_event(kind: str, email: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": kind,
        "time": 1433333949,
        "MessageID": 19421777835146490,
        "email": email,
        "mj_campaign_id": 7257,
        "mj_contact_id": 4,
        "customcampaign": "",
        "CustomID": "",
        "Payload": "",
        **extra,
    }


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (POSTMARK_HARD_BOUNCE, [Suppression("gone@example.org", "hard-bounce", "postmark")]),
        (POSTMARK_SOFT_BOUNCE, []),
        (POSTMARK_COMPLAINT, [Suppression("angry@example.org", "complaint", "postmark")]),
        (
            postmark_change("left@example.org", "ManualSuppression", "Recipient"),
            [Suppression("left@example.org", "unsubscribed", "postmark")],
        ),
        (
            postmark_change("x@example.org", "ManualSuppression", "Customer"),
            [Suppression("x@example.org", "manual", "postmark")],
        ),
        (
            postmark_change("b@example.org", "HardBounce", "Recipient"),
            [Suppression("b@example.org", "hard-bounce", "postmark")],
        ),
        (postmark_change("back@example.org", None, "Customer", suppress=False), []),
        ({"RecordType": "Delivery", "Recipient": "ok@example.org"}, []),
        ({"RecordType": "Open", "Recipient": "ok@example.org"}, []),
    ],
)
def test_postmark_events_become_suppressions(payload: Any, expected: list[Suppression]) -> None:
    assert postmark_suppressions(payload) == expected


def test_mailjet_single_and_grouped_events() -> None:
    grouped = [
        mailjet_event("sent", "fine@example.org", smtp_reply="sent (250 OK)"),
        mailjet_event("bounce", "gone@example.org", blocked=True, hard_bounce=True),
        mailjet_event("bounce", "full@example.org", blocked=False, hard_bounce=False),
        mailjet_event("blocked", "pre@example.org", error_related_to="mailjet", error="preblocked"),
        mailjet_event("spam", "angry@example.org", source="JMRPP"),
        mailjet_event("unsub", "left@example.org", mj_list_id=1),
    ]
    assert mailjet_suppressions(grouped) == [
        Suppression("gone@example.org", "hard-bounce", "mailjet"),
        Suppression("angry@example.org", "complaint", "mailjet"),
        Suppression("left@example.org", "unsubscribed", "mailjet"),
    ]
    assert mailjet_suppressions(grouped[4]) == [
        Suppression("angry@example.org", "complaint", "mailjet")
    ]


@pytest.mark.parametrize(
    ("reader", "payload"),
    [
        (postmark_suppressions, [POSTMARK_HARD_BOUNCE]),
        (postmark_suppressions, {**POSTMARK_HARD_BOUNCE, "Email": ""}),
        (mailjet_suppressions, ["not an event"]),
        (mailjet_suppressions, {"event": "spam"}),
    ],
)
def test_payloads_of_the_wrong_shape_are_refused(reader: Any, payload: Any) -> None:
    with pytest.raises(WebhookPayloadError):
        reader(payload)


def _post(
    server: ServeProcess, provider: str, body: Any, auth: tuple[str, str] | None
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.session().post(
        f"{server.base_url}/webhooks/{provider}",
        data=data,
        headers={"Content-Type": "application/json"},
        auth=auth,
        timeout=10,
    )


def _reasons(server: ServeProcess) -> dict[str, str]:
    with server.suppressed_path.open(newline="", encoding="utf-8") as handle:
        return {row["email"]: row["reason"] for row in csv.DictReader(handle)}


def test_postmark_webhook_suppresses_hard_bounces_and_complaints(
    serve_server: ServeProcess,
) -> None:
    auth = WEBHOOK_USERS["postmark"]
    for payload in (POSTMARK_HARD_BOUNCE, POSTMARK_SOFT_BOUNCE, POSTMARK_COMPLAINT):
        assert _post(serve_server, "postmark", payload, auth).status_code == 200

    reasons = _reasons(serve_server)
    assert reasons["gone@example.org"] == "hard-bounce"
    assert reasons["angry@example.org"] == "complaint"
    assert "full@example.org" not in reasons
    events = read_list_events(serve_server.ledger_path)
    assert [(e.address, e.reason, e.source) for e in events] == [
        ("gone@example.org", "hard-bounce", "postmark"),
        ("angry@example.org", "complaint", "postmark"),
    ]


def test_mailjet_webhook_takes_a_grouped_batch(serve_server: ServeProcess) -> None:
    batch = [
        mailjet_event("bounce", "gone@example.org", blocked=True, hard_bounce=True),
        mailjet_event("open", "reader@example.org", ip="127.0.0.1", geo="GB", agent="x"),
        mailjet_event("unsub", "left@example.org", mj_list_id=1),
    ]
    answer = _post(serve_server, "mailjet", batch, WEBHOOK_USERS["mailjet"])
    assert answer.status_code == 200
    assert answer.json() == {"events": 2, "suppressed": 2}
    reasons = _reasons(serve_server)
    assert (reasons["gone@example.org"], reasons["left@example.org"]) == (
        "hard-bounce",
        "unsubscribed",
    )


@pytest.mark.parametrize(
    "auth",
    [
        None,
        ("postmark-hook", "wrong-password"),
        ("someone-else", WEBHOOK_USERS["postmark"][1]),
        WEBHOOK_USERS["mailjet"],  # another provider's credentials
    ],
)
def test_webhooks_without_the_right_credentials_change_nothing(
    serve_server: ServeProcess, auth: tuple[str, str] | None
) -> None:
    before = serve_server.suppressed_path.read_bytes()
    answer = _post(serve_server, "postmark", POSTMARK_HARD_BOUNCE, auth)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert serve_server.suppressed_path.read_bytes() == before
    assert read_list_events(serve_server.ledger_path) == []


@pytest.mark.parametrize("body", [b"not json", b'{"RecordType": "Bounce", "Type": "HardBounce"}'])
def test_a_malformed_webhook_body_is_a_400_and_changes_nothing(
    serve_server: ServeProcess, body: bytes
) -> None:
    before = serve_server.suppressed_path.read_bytes()
    answer = _post(serve_server, "postmark", body, WEBHOOK_USERS["postmark"])
    assert answer.status_code == 400
    assert serve_server.suppressed_path.read_bytes() == before


def test_webhooks_are_off_until_their_credentials_are_set(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_one_click(project_dir, monkeypatch)
    server = start_serve(project_dir)
    try:
        answer = _post(server, "postmark", POSTMARK_HARD_BOUNCE, WEBHOOK_USERS["postmark"])
        assert answer.status_code == 404
        assert "gone@example.org" not in _reasons(server)
    finally:
        stop_serve(server)
