"""What comes back to the newsletter's mailbox, classified into events.

`classify` takes one parsed message and says what it is, as data: no I/O,
nothing suppressed here. Whether the message proves it answers one of our
messages is `verify`'s question, and `run` acts only on what it proved.
MIME structure is read only through the standard library's parser (`mime`);
only the free text of a bounce that lacks its machine-readable part is read
line by line. The forms have a module each: `dsn`, `arf`, `text_bounce`.

The rules, in the order they are tried:

1. Delivery status notification (RFC 3464: `multipart/report;
   report-type=delivery-status` with a `message/delivery-status` part). One
   event per recipient block, for its `Final-Recipient`: `delayed`, or any
   4.x.x status, is a soft bounce (recorded, never suppressed); `failed`
   with a 5.x.x status is a hard bounce or a policy bounce, by the rule
   below. Postfix, Exim, Exchange Online and Gmail all send this form.
2. Feedback report (RFC 5965: `report-type=feedback-report`): a complaint
   about the recipient named by `Original-Rcpt-To` (or the deprecated
   `Removal-Recipient`, or Microsoft's `X-HmXmrOriginalRecipient`, or the
   returned message's `To`). `not-spam` and `auth-failure` reports are not
   complaints and are left for a person.
3. A bounce without a DSN part, from a mail system (MAILER-DAEMON,
   postmaster, Microsoft Exchange, or marked `X-MS-Exchange-Message-Is-Ndr`
   / `X-Failed-Recipients`), in the text layout Postfix ("<address>: ...
   said: 550 5.1.1 ...") or Exchange / Office 365 ("Diagnostic information
   for administrators:" then the address and "Remote Server returned '550
   5.1.10 ...'", "#550 5.1.1 ...##", or "Recipient Address:" with
   "Reported error: 550 5.1.10 ...") write, and Exim's text naming its
   `X-Failed-Recipients`. A recipient is only reported with the status code
   the text gives; a mail system's message without one is unclassified.
4. Auto-replies (RFC 3834 `Auto-Submitted` other than `no`, Exchange's
   `X-Auto-Response-Suppress`, `Precedence: auto_reply`, `X-Autoreply`,
   subjects such as "Automatic reply:" or "Out of Office"): ignored, never a
   bounce. Bounces carry `Auto-Submitted` too, which is why they come first.
5. A message addressed to the `unsubscribe.mailto` address: an unsubscribe
   request for the address our mailto link names in its subject
   ("Unsubscribe ADDRESS from ... (ref TOKEN)"), else for the sender; it is
   acted on only with the signed reference (`verify`).
6. Anything else is `unclassified`, with the reason, for a person to read.

Which permanent failures suppress the address (RFC 3463's subjects): only
those about the address itself. X.1.x (addressing: no such user, no such
domain), X.2.x (the mailbox: disabled, full for good) and X.5.x (what many
servers answer for an unknown mailbox) are hard bounces, and so is a bare
5.0.0 whose server text says the user is unknown (or names a more precise
code, as Exim's does). Anything else permanent, above all 5.7.x (a
blocklist, DMARC, a spam policy) but also 5.6.x (content), 5.3.x (the
receiving system) and 5.4.x (routing), is a policy bounce: the message was
refused for a reason that is not the person, so it is recorded and the
address stays on the list (a reader must not lose the newsletter because
their provider blocked one send).

The returned message's Message-ID (from the DSN's `X-Original-Message-ID`,
a `message/rfc822` or `text/rfc822-headers` part, or the headers an
Exchange bounce quotes) ties an event to an issue: our Message-IDs are
`<ISSUE.DIGEST@DOMAIN>`, the digest keyed per recipient (see
`message.message_id_for` and `core.signing`).
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import getaddresses

from newsletter.inbox.arf import feedback_report
from newsletter.inbox.dsn import bounce_kind as bounce_kind
from newsletter.inbox.dsn import delivery_status
from newsletter.inbox.events import SUPPRESSION_REASON as SUPPRESSION_REASON
from newsletter.inbox.events import Classification as Classification
from newsletter.inbox.events import EventKind as EventKind
from newsletter.inbox.events import InboxContext as InboxContext
from newsletter.inbox.events import InboxEvent as InboxEvent
from newsletter.inbox.events import MessageClass as MessageClass
from newsletter.inbox.events import issue_for_message_id as issue_for_message_id
from newsletter.inbox.mime import one_line, plain_address, sender_of
from newsletter.inbox.mime import parse_bytes as parse_bytes
from newsletter.inbox.text_bounce import from_mail_system, plain_text_bounce

AUTO_REPLY_SUBJECT_STARTS = (
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "auto-reply:",
    "auto:",
    "out of office",
    "out of the office",
    "abwesenheitsnotiz:",
    "réponse automatique :",
)
AUTO_REPLY_SUBJECT_WORDS = ("out of office", "out of the office", "on annual leave")
# An enhanced status code (RFC 3463) inside free text: class.subject.detail.


def classify(message: EmailMessage, context: InboxContext) -> Classification:
    """Say what `message` is: a bounce, complaint, unsubscribe, auto-reply or unclassified."""
    report_type = str(message.get_param("report-type") or "")
    if message.get_content_type() == "multipart/report":
        if report_type.lower() == "delivery-status":
            return delivery_status(message, context)
        if report_type.lower() == "feedback-report":
            return feedback_report(message, context)
    if from_mail_system(message):
        # A mail system's message is a bounce or nothing we can read: never an auto-reply.
        found = plain_text_bounce(message, context)
        if found is not None:
            return found
        return Classification(
            "unclassified",
            reason="from a mail system, but no recipient with a status code could be read",
        )
    if _is_auto_reply(message):
        return Classification("auto-reply", (InboxEvent("auto-reply", sender_of(message)),))
    if _addressed_to(message, context.unsubscribe_address):
        return _unsubscribe(message, context)
    return Classification(
        "unclassified", reason="not a bounce, complaint, auto-reply or unsubscribe"
    )


# --- auto-replies (RFC 3834 and the common non-standard marks) ---------------


def _is_auto_reply(message: EmailMessage) -> bool:
    auto_submitted = one_line(message.get("Auto-Submitted")).lower()
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        return True
    if message.get("X-Auto-Response-Suppress") is not None:
        return True
    if one_line(message.get("Precedence")).lower() == "auto_reply":
        return True
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return True
    subject = " ".join(one_line(message.get("Subject")).lower().split())
    return subject.startswith(AUTO_REPLY_SUBJECT_STARTS) or any(
        word in subject for word in AUTO_REPLY_SUBJECT_WORDS
    )


# --- unsubscribe requests to the mailto: address ----------------------------


def _addressed_to(message: EmailMessage, address: str) -> bool:
    wanted = address.strip().lower()
    if not wanted:
        return False
    values: list[str] = []
    for name in ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To"):
        values += [one_line(v) for v in message.get_all(name, [])]
    return any(a.strip().lower() == wanted for _, a in getaddresses(values))


def _unsubscribe(message: EmailMessage, context: InboxContext) -> Classification:
    # Our mailto link's subject is "Unsubscribe ADDRESS from ... News Update".
    words = one_line(message.get("Subject")).split()
    named = None
    if len(words) >= 2 and words[0].lower().strip(":") == "unsubscribe":
        named = plain_address(words[1])
    address = named or sender_of(message)
    if address is None:
        return Classification("unclassified", reason="an unsubscribe request that names no address")
    original_id = one_line(message.get("In-Reply-To")) or None
    event = InboxEvent(
        "unsubscribe",
        address,
        action="mailto",
        detail="the address named in the subject" if named else "the sender",
        issue_id=issue_for_message_id(original_id, context.message_id_domain),
        original_message_id=original_id,
    )
    return Classification("unsubscribe", (event,))
