"""Classifying returned mail: the corpus in tests/fixtures/inbox/, in the formats real servers send."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.inbox.classify import (
    Classification,
    InboxContext,
    bounce_kind,
    classify,
    issue_for_message_id,
    parse_bytes,
)
from tests.inbox.sent import our_message_id

FIXTURES = Path(__file__).parents[1] / "fixtures" / "inbox"
ISSUE = "2023-05-panel-reports"


def _made_for(message_id: str, address: str) -> bool:
    """What `inbox` asks the verifier: was our keyed Message-ID made for this address?"""
    return any(our_message_id(address, issue) == message_id for issue in (ISSUE, "2023-08-neglect"))


CONTEXT = InboxContext(
    unsubscribe_address="unsubscribe@example.org",
    message_id_domain="example.org",
    made_for=_made_for,
)

# fixture -> (class, [(event kind, address, status)]) with every event naming the issue
# when the returned message carried one of our Message-IDs.
EXPECTED: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "postfix-dsn-user-unknown.eml": ("bounce", [("hard-bounce", "gone@example.com", "5.1.1")]),
    "postfix-dsn-delayed.eml": ("bounce", [("soft-bounce", "slow@example.net", "4.4.1")]),
    "exim-dsn-failed.eml": ("bounce", [("hard-bounce", "left@example.net", "5.0.0")]),
    "exchange-online-ndr.eml": ("bounce", [("hard-bounce", "moved@example.com", "5.1.10")]),
    "gmail-dsn-failure.eml": ("bounce", [("hard-bounce", "nobody@example.com", "5.1.1")]),
    "gmail-dsn-delay.eml": ("bounce", [("soft-bounce", "busy@example.com", "4.4.1")]),
    "exchange-text-ndr-no-dsn.eml": ("bounce", [("hard-bounce", "former@example.com", "5.1.1")]),
    "office365-text-ndr-no-dsn.eml": (
        "bounce",
        [("hard-bounce", "departed@example.org", "5.1.10")],
    ),
    "postfix-text-bounce-no-dsn.eml": ("bounce", [("hard-bounce", "closed@example.net", "5.2.1")]),
    # A bare 5.0.0 is a hard bounce only when the server's words say the user is unknown.
    "exim-dsn-no-such-user.eml": ("bounce", [("hard-bounce", "nosuch@example.net", "5.0.0")]),
    # Refused by policy: a blocklist, DMARC, unauthenticated mail. Not about the person.
    "postfix-dsn-blocklisted.eml": (
        "bounce",
        [("policy-bounce", "blocklisted@example.net", "5.7.1")],
    ),
    "exchange-online-dmarc-reject.eml": (
        "bounce",
        [("policy-bounce", "dmarc.strict@example.com", "5.7.509")],
    ),
    "postfix-text-gmail-unauthenticated.eml": (
        "bounce",
        [("policy-bounce", "unauthenticated@example.com", "5.7.26")],
    ),
    "exim-dsn-administrative-prohibition.eml": (
        "bounce",
        [("policy-bounce", "prohibited@example.net", "5.0.0")],
    ),
    "arf-abuse-complaint.eml": ("complaint", [("complaint", "annoyed@example.com", "")]),
    "hotmail-jmrp-complaint.eml": ("complaint", [("complaint", "reader7@example.com", "")]),
    "auto-reply-exchange-oof.eml": (
        "auto-reply",
        [("auto-reply", "sam.practitioner@example.com", "")],
    ),
    "auto-reply-gmail-vacation.eml": (
        "auto-reply",
        [("auto-reply", "alex.health@example.net", "")],
    ),
    "auto-reply-domino-subject.eml": (
        "auto-reply",
        [("auto-reply", "chris.education@example.org", "")],
    ),
    "auto-reply-to-unsubscribe-address.eml": (
        "auto-reply",
        [("auto-reply", "jo.police@example.com", "")],
    ),
    "unsubscribe-mailto-link.eml": ("unsubscribe", [("unsubscribe", "oldbox@example.net", "")]),
    "unsubscribe-plain-request.eml": (
        "unsubscribe",
        [("unsubscribe", "robin.care@example.com", "")],
    ),
    "human-reply.eml": ("unclassified", []),
    "mailer-daemon-no-status.eml": ("unclassified", []),
    "redacted-complaint.eml": ("unclassified", []),
}
RETURNS_OUR_MESSAGE = {
    "postfix-dsn-user-unknown.eml", "postfix-dsn-delayed.eml", "exim-dsn-failed.eml",
    "exchange-online-ndr.eml", "gmail-dsn-failure.eml", "gmail-dsn-delay.eml",
    "exchange-text-ndr-no-dsn.eml", "office365-text-ndr-no-dsn.eml",
    "postfix-text-bounce-no-dsn.eml", "arf-abuse-complaint.eml", "hotmail-jmrp-complaint.eml",
    "exim-dsn-no-such-user.eml", "postfix-dsn-blocklisted.eml", "exchange-online-dmarc-reject.eml",
    "postfix-text-gmail-unauthenticated.eml", "exim-dsn-administrative-prohibition.eml",
}  # fmt: skip


def _classify(name: str, context: InboxContext = CONTEXT) -> Classification:
    return classify(parse_bytes((FIXTURES / name).read_bytes()), context)


def test_every_fixture_in_the_corpus_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_message_is_classified_as_a_person_reading_it_would(name: str) -> None:
    expected_class, expected_events = EXPECTED[name]
    found = _classify(name)
    assert found.message_class == expected_class, found.reason
    assert [(e.kind, e.address, e.status) for e in found.events] == expected_events
    if expected_class == "unclassified":
        assert found.reason  # a person is told why it was left
    if name in RETURNS_OUR_MESSAGE:
        [event] = found.events
        # The returned Message-ID ties the event to the issue and to the address it was sent to.
        assert event.issue_id == ISSUE
        assert event.original_message_id == our_message_id(event.address)


def test_a_dsn_with_several_recipients_gives_one_event_each_hard_and_soft_apart() -> None:
    raw = (FIXTURES / "postfix-dsn-user-unknown.eml").read_bytes()
    extra = (
        b"Final-Recipient: rfc822; full@example.net\n"
        b"Action: failed\n"
        b"Status: 4.2.2\n"
        b"Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\n\n"
        b"Final-Recipient: rfc822; fine@example.net\n"
        b"Action: delivered\n"
        b"Status: 2.0.0\n\n"
    )
    marker = b"    rejected: User unknown in virtual mailbox table\n\n"
    assert marker in raw
    found = classify(parse_bytes(raw.replace(marker, marker + extra)), CONTEXT)
    assert [(e.kind, e.address, e.status, e.action) for e in found.events] == [
        ("hard-bounce", "gone@example.com", "5.1.1", "failed"),
        # A failure with a 4.x.x status is recorded, never suppressed; a delivery is no event.
        ("soft-bounce", "full@example.net", "4.2.2", "failed"),
    ]
    assert [e.suppression_reason for e in found.events] == ["hard-bounce", None]


def test_only_hard_bounces_complaints_and_unsubscribes_carry_a_suppression_reason() -> None:
    reasons = {e.kind: e.suppression_reason for name in EXPECTED for e in _classify(name).events}
    assert reasons == {
        "hard-bounce": "hard-bounce",
        "policy-bounce": None,  # refused by policy: recorded, the address stays on the list
        "soft-bounce": None,
        "complaint": "complaint",
        "unsubscribe": "mailto",
        "auto-reply": None,
    }


def test_a_complaint_with_the_recipient_hidden_is_resolved_through_the_ledger() -> None:
    hidden_id = our_message_id("hidden@example.org")
    asked: list[str] = []

    def recipient_of(message_id: str) -> str | None:
        asked.append(message_id)
        return "hidden@example.org" if message_id == hidden_id else None

    context = InboxContext("unsubscribe@example.org", "example.org", recipient_of, _made_for)
    found = _classify("redacted-complaint.eml", context)
    assert [(e.kind, e.address, e.issue_id) for e in found.events] == [
        ("complaint", "hidden@example.org", ISSUE)
    ]
    # The report's `To: redacted@...` was not believed: our Message-ID was not made for it.
    assert asked == [hidden_id]


def test_an_out_of_office_reply_to_the_unsubscribe_address_is_not_an_unsubscribe() -> None:
    found = _classify("auto-reply-to-unsubscribe-address.eml")
    assert found.message_class == "auto-reply"
    assert all(e.suppression_reason is None for e in found.events)


def test_an_unsubscribe_is_only_read_from_mail_addressed_to_the_unsubscribe_address() -> None:
    raw = (FIXTURES / "unsubscribe-plain-request.eml").read_bytes()
    to_comms = raw.replace(b'To: "Unsubscribe" <unsubscribe@example.org>', b"To: comms@example.org")
    assert classify(parse_bytes(to_comms), CONTEXT).message_class == "unclassified"


def test_message_ids_of_our_issues_are_recognised_and_others_are_not() -> None:
    ours = our_message_id("Someone@Example.com", "2023-08-neglect")
    assert issue_for_message_id(ours, "example.org") == "2023-08-neglect"
    assert issue_for_message_id(ours, "other.example") is None  # another sender's domain
    assert issue_for_message_id("<1684396862.1234.5678.test@example.org>", "example.org") is None
    assert issue_for_message_id("<E1pzZ9N-0003Kq-2b@mx.example.net>", "example.org") is None
    assert issue_for_message_id(None, "example.org") is None


@pytest.mark.parametrize(
    ("action", "status", "words", "kind"),
    [
        # About the address: no such mailbox, disabled or full mailbox, an unknown user.
        ("failed", "5.1.1", "550 5.1.1 User unknown", "hard-bounce"),
        ("failed", "5.1.10", "RESOLVER.ADR.RecipientNotFound", "hard-bounce"),
        ("failed", "5.2.1", "this mailbox is disabled", "hard-bounce"),
        ("failed", "5.2.2", "mailbox full", "hard-bounce"),
        (
            "failed",
            "5.5.0",
            "550 5.5.0 Requested action not taken: mailbox unavailable",
            "hard-bounce",
        ),
        ("failed", "5.0.0", "550 No Such User Here", "hard-bounce"),
        ("failed", "5.0.0", "550 5.1.1 <x@example.net>: Recipient address rejected", "hard-bounce"),
        # Not about the address: policy, content, the receiving system, routing.
        (
            "failed",
            "5.7.1",
            "554 5.7.1 Client host blocked using zen.spamhaus.org",
            "policy-bounce",
        ),
        ("failed", "5.7.509", "does not pass DMARC verification", "policy-bounce"),
        ("failed", "5.7.26", "This mail is unauthenticated", "policy-bounce"),
        ("failed", "5.6.0", "message content rejected", "policy-bounce"),
        ("failed", "5.3.4", "message too big for system", "policy-bounce"),
        ("failed", "5.4.7", "delivery time expired", "policy-bounce"),
        ("failed", "5.0.0", "550 Administrative prohibition", "policy-bounce"),
        ("failed", "5.0.0", "550 5.7.1 Message rejected as spam", "policy-bounce"),
        # Not final: a delay, or a 4.x.x failure.
        ("delayed", "4.4.1", "connection timed out", "soft-bounce"),
        ("failed", "4.2.2", "mailbox full", "soft-bounce"),
        ("delayed", "5.1.1", "a warning only", "soft-bounce"),
    ],
)
def test_only_failures_about_the_address_itself_are_hard_bounces(
    action: str, status: str, words: str, kind: str
) -> None:
    assert bounce_kind(action, status, words) == kind


def test_a_policy_bounce_keeps_its_status_and_the_servers_words_for_the_report() -> None:
    [event] = _classify("postfix-dsn-blocklisted.eml").events
    assert event.suppression_reason is None
    assert (event.kind, event.status, event.action) == ("policy-bounce", "5.7.1", "failed")
    assert "zen.spamhaus.org" in event.detail
