"""Genuine hard bounces in bulk: what comes back when many of the people we sent to are gone.

Each is a Postfix delivery report (RFC 3464) delivered to the signed return
path of the message we sent (`bounces+TOKEN@example.org`) and quoting its
keyed Message-ID, so it verifies as ours once the issue is recorded as sent
to that address (`tests.inbox.sent.record_sent`).
"""

from __future__ import annotations

from newsletter.core.signing import return_path_token, tagged_return_path
from tests.inbox.sent import our_message_id
from tests.support.project import SAMPLE_ISSUE, UNSUBSCRIBE_SECRET


def reader(n: int) -> str:
    return f"reader{n}@example.net"


def hard_bounce(address: str, bounce_id: str) -> bytes:
    """A 5.1.1 "user unknown" report for our message to `address`; `bounce_id` names the report."""
    token = return_path_token(UNSUBSCRIBE_SECRET, SAMPLE_ISSUE, address)
    return_path = tagged_return_path("bounces@example.org", token)
    return (
        f"Return-Path: <>\nX-Original-To: {return_path}\nDelivered-To: {return_path}\n"
        "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\nTo: comms@example.org\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
        f"Message-Id: <{bounce_id}@mail.example.org>\n\n"
        "--B\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"<{address}>: host mx.example.net said: 550 5.1.1 User unknown\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mail.example.org\n\nFinal-Recipient: rfc822; {address}\n"
        f"Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <{address}>: "
        "User unknown\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        f"Return-Path: <{return_path}>\nFrom: comms@example.org\nTo: {address}\n"
        f"Subject: News Update\nMessage-ID: {our_message_id(address)}\n\n"
        "--B--\n"
    ).encode()
