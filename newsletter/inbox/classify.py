"""What comes back to the newsletter's mailbox, classified into events.

`classify` takes one parsed message and says what it is, as data: no I/O,
nothing suppressed here (`inbox.py` acts on the result). MIME structure is
read only through the standard library's parser; only the free text of a
bounce that lacks its machine-readable part is read line by line.

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
   ("Unsubscribe ADDRESS from ..."), else for the sender.
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
`<ISSUE.DIGEST@DOMAIN>` (see `message.message_id_for`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, Parser
from email.utils import getaddresses, parseaddr
from typing import Literal

from newsletter.render.message import message_id_for

EventKind = Literal[
    "hard-bounce",
    "policy-bounce",
    "soft-bounce",
    "complaint",
    "unsubscribe",
    "auto-reply",
    "unclassified",
]
MessageClass = Literal["bounce", "complaint", "unsubscribe", "auto-reply", "unclassified"]

# The suppression-list reason each acted-on event is filed under.
SUPPRESSION_REASON: dict[str, str] = {
    "hard-bounce": "hard-bounce",
    "complaint": "complaint",
    "unsubscribe": "mailto",
}
COMPLAINT_FEEDBACK_TYPES = frozenset({"abuse", "fraud", "virus", "other"})
MAIL_SYSTEM_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
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
_STATUS_IN_TEXT = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# RFC 3463 subjects of a permanent failure that are about the address itself.
ADDRESS_SUBJECTS = frozenset({"1", "2", "5"})
# How servers that answer a bare 5.0.0 say the mailbox does not exist.
UNKNOWN_USER_WORDS = (
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "no such recipient",
    "unknown recipient",
    "recipient unknown",
    "mailbox not found",
    "does not exist",
    "invalid recipient",
)
_HEX = frozenset(string.hexdigits)
_DETAIL_LIMIT = 300
_PARSER = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class InboxEvent:
    """One thing a returned message says about one address."""

    kind: EventKind
    address: str | None = None
    status: str = ""  # the enhanced status code, e.g. 5.1.1
    action: str = ""  # the DSN action, or the feedback type of a complaint
    detail: str = ""  # the remote server's words, shortened
    issue_id: str | None = None
    original_message_id: str | None = None

    @property
    def suppression_reason(self) -> str | None:
        """The reason to file on the suppression list, or None when nobody is suppressed."""
        return SUPPRESSION_REASON.get(self.kind) if self.address else None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "address": self.address,
            "status": self.status,
            "action": self.action,
            "detail": self.detail,
            "issue": self.issue_id,
            "original_message_id": self.original_message_id,
        }


@dataclass(frozen=True)
class Classification:
    """What one message is, and the events it carries (none for an unclassified one)."""

    message_class: MessageClass
    events: tuple[InboxEvent, ...] = ()
    reason: str = ""  # why a message is unclassified, in words for a person


@dataclass(frozen=True)
class InboxContext:
    """What classifying needs to know about this newsletter.

    `recipient_of` answers "who was sent the message with this Message-ID?"
    from the delivery ledger, for complaints whose reporter hid the address.
    """

    unsubscribe_address: str
    message_id_domain: str  # the domain of our Message-IDs (the sender's domain)
    recipient_of: Callable[[str], str | None] | None = None


def parse_bytes(raw: bytes) -> EmailMessage:
    """A message from its bytes, with the standard library's modern policy."""
    parsed = _PARSER.parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def classify(message: EmailMessage, context: InboxContext) -> Classification:
    """Say what `message` is: a bounce, complaint, unsubscribe, auto-reply or unclassified."""
    report_type = str(message.get_param("report-type") or "")
    if message.get_content_type() == "multipart/report":
        if report_type.lower() == "delivery-status":
            return _delivery_status(message, context)
        if report_type.lower() == "feedback-report":
            return _feedback_report(message, context)
    if _from_mail_system(message):
        # A mail system's message is a bounce or nothing we can read: never an auto-reply.
        found = _plain_text_bounce(message, context)
        if found is not None:
            return found
        return Classification(
            "unclassified",
            reason="from a mail system, but no recipient with a status code could be read",
        )
    if _is_auto_reply(message):
        return Classification("auto-reply", (InboxEvent("auto-reply", _sender(message)),))
    if _addressed_to(message, context.unsubscribe_address):
        return _unsubscribe(message, context)
    return Classification(
        "unclassified", reason="not a bounce, complaint, auto-reply or unsubscribe"
    )


# --- delivery status notifications (RFC 3464) -------------------------------


def _delivery_status(message: EmailMessage, context: InboxContext) -> Classification:
    status_part = _first_part(message, "message/delivery-status")
    if status_part is None:
        return Classification(
            "unclassified", reason="a delivery report without its message/delivery-status part"
        )
    blocks = [b for b in status_part.get_payload() if isinstance(b, Message)]
    per_message = blocks[0] if blocks else None
    original_id = _original_message_id(message, per_message)
    issue_id = issue_for_message_id(original_id, context.message_id_domain)
    events: list[InboxEvent] = []
    for block in blocks[1:]:
        address = _typed_address(block.get("Final-Recipient")) or _typed_address(
            block.get("Original-Recipient")
        )
        action = _text(block.get("Action")).lower()
        status = _status_code(_text(block.get("Status")))
        if address is None or action in ("delivered", "relayed", "expanded"):
            continue
        detail = _diagnostic(block)
        events.append(
            InboxEvent(
                bounce_kind(action, status, detail),
                address,
                status=status,
                action=action,
                detail=_short(detail),
                issue_id=issue_id,
                original_message_id=original_id,
            )
        )
    if not events:
        return Classification(
            "unclassified", reason="a delivery report with no failed or delayed recipient"
        )
    return Classification("bounce", tuple(events))


def bounce_kind(action: str, status: str, detail: str) -> EventKind:
    """Hard, policy or soft bounce, from the DSN action, its status and the server's words.

    See the module docstring for the rule. `status` may be a bare 5.0.0 (Exim
    writes that and gives the real code in the server's words), so a more
    precise code in `detail` is preferred to it.
    """
    if action != "failed" or not status.startswith("5."):
        return "soft-bounce"
    subject = status.split(".")[1]
    if subject == "0":
        precise = _status_in_text(detail)
        if precise.startswith("5.") and precise.split(".")[1] != "0":
            subject = precise.split(".")[1]
    if subject in ADDRESS_SUBJECTS:
        return "hard-bounce"
    words = " ".join(detail.lower().split())
    if subject == "0" and any(phrase in words for phrase in UNKNOWN_USER_WORDS):
        return "hard-bounce"
    return "policy-bounce"


def _diagnostic(block: Message) -> str:
    code = _text(block.get("Diagnostic-Code"))
    # "smtp; 550 5.1.1 ..." -> the server's words after the type.
    return code.partition(";")[2].strip() if ";" in code else code


def _typed_address(value: object) -> str | None:
    """The address of an RFC 3464 `rfc822; someone@example.org` field."""
    text = _text(value)
    if not text:
        return None
    kind, _, address = text.partition(";")
    if not address:
        kind, address = "rfc822", kind
    if kind.strip().lower() != "rfc822":
        return None
    return _plain_address(address)


# --- feedback reports (RFC 5965) --------------------------------------------


def _feedback_report(message: EmailMessage, context: InboxContext) -> Classification:
    part = _first_part(message, "message/feedback-report")
    fields = _feedback_fields(part) if part is not None else None
    if fields is None:
        return Classification(
            "unclassified", reason="a feedback report without its message/feedback-report part"
        )
    feedback_type = _text(fields.get("Feedback-Type")).lower()
    if feedback_type not in COMPLAINT_FEEDBACK_TYPES:
        return Classification(
            "unclassified", reason=f"a feedback report of type `{feedback_type or '?'}`"
        )
    original = _returned_headers(message)
    original_id = _message_id_of(original)
    address = _complainant(fields, original, original_id, context)
    if address is None:
        return Classification("unclassified", reason="a complaint that does not say who complained")
    event = InboxEvent(
        "complaint",
        address,
        action=feedback_type,
        detail=_short(_text(fields.get("User-Agent"))),
        issue_id=issue_for_message_id(original_id, context.message_id_domain),
        original_message_id=original_id,
    )
    return Classification("complaint", (event,))


def _complainant(
    fields: Message, original: Message | None, original_id: str | None, context: InboxContext
) -> str | None:
    """Who complained: the report's own fields first, then the returned message.

    Reporters often hide the recipient (`To: redacted@...`). When the returned
    message carries one of our Message-IDs, a candidate is only believed if
    that Message-ID was made for it, and otherwise the ledger is asked.
    """
    candidates = [
        _plain_address(_text(value))
        for value in (
            fields.get("Original-Rcpt-To"),
            fields.get("Removal-Recipient"),
            original.get("X-HmXmrOriginalRecipient") if original is not None else None,
        )
    ]
    if original is not None:
        to = [a for _, a in getaddresses([_text(v) for v in original.get_all("To", [])])]
        if len(to) == 1:
            candidates.append(_plain_address(to[0]))
    found = [c for c in candidates if c]
    issue_id = issue_for_message_id(original_id, context.message_id_domain)
    if original_id is None or issue_id is None:
        return found[0] if found else None
    for candidate in found:
        if message_id_for(issue_id, candidate, context.message_id_domain) == original_id:
            return candidate
    return context.recipient_of(original_id) if context.recipient_of is not None else None


def _feedback_fields(part: Message) -> Message | None:
    """The feedback report's fields; the stdlib parses a message/* body as a nested message."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        return Parser(policy=policy.default).parsestr(payload, headersonly=True)
    return None


# --- bounces without a DSN part (Postfix, Exchange / Office 365 text) --------


def _plain_text_bounce(message: EmailMessage, context: InboxContext) -> Classification | None:
    warning_only = False
    found: dict[str, tuple[str, str]] = {}
    quoted_headers: Message | None = None
    for text in _text_parts(message):
        warning_only = warning_only or "THIS IS A WARNING ONLY" in text
        for address, status, detail in _postfix_recipients(text):
            found.setdefault(address, (status, detail))
        for address, status, detail in _exchange_recipients(text):
            found.setdefault(address, (status, detail))
        for address, status, detail in _office365_recipients(text):
            found.setdefault(address, (status, detail))
        for address, status, detail in _exim_recipients(text, message):
            found.setdefault(address, (status, detail))
        if quoted_headers is None:
            quoted_headers = _exchange_quoted_headers(text)
    if not found:
        return None
    original = _returned_headers(message) or quoted_headers
    original_id = _message_id_of(original) or _message_id_text(message.get("In-Reply-To"))
    issue_id = issue_for_message_id(original_id, context.message_id_domain)
    events = tuple(
        InboxEvent(
            bounce_kind("delayed" if warning_only else "failed", status, detail),
            address,
            status=status,
            action="delayed" if warning_only else "failed",
            detail=_short(detail),
            issue_id=issue_id,
            original_message_id=original_id,
        )
        for address, (status, detail) in found.items()
    )
    return Classification("bounce", events)


def _postfix_recipients(text: str) -> Iterator[tuple[str, str, str]]:
    """Postfix's `<address>: reason` paragraphs (continuation lines indented)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("<") or ">" not in line:
            continue
        address_text, _, rest = line[1:].partition(">")
        if not (rest.startswith(":") or rest.startswith(" (expanded from")):
            continue
        address = _plain_address(address_text)
        if address is None:
            continue
        detail = [rest.partition(":")[2].strip()]
        for following in lines[index + 1 :]:
            if not following.startswith((" ", "\t")) or not following.strip():
                break
            detail.append(following.strip())
        joined = " ".join(detail)
        status = _status_in_text(joined)
        if status:
            yield address, status, joined


def _exchange_recipients(text: str) -> Iterator[tuple[str, str, str]]:
    """Exchange's administrator section: an address line, then "Remote Server returned '550 ...'"
    or "#550 5.1.1 ... ##" (the section's heading is translated; these lines are not)."""
    body = text.partition("Original message headers:")[0]
    lines = [line.strip() for line in body.splitlines()]
    for index, line in enumerate(lines):
        address = _plain_address(line.partition("<mailto:")[0])
        if address is None:
            continue
        for following in lines[index + 1 : index + 3]:
            status = _status_in_text(following)
            if status and (
                following.startswith("Remote Server returned") or following.startswith("#")
            ):
                yield address, status, following.strip("#").strip()
                break


def _office365_recipients(text: str) -> Iterator[tuple[str, str, str]]:
    """Office 365's "Original Message Details": `Recipient Address:` and `Reported error:`."""
    addresses: list[str] = []
    error = ""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        label, _, value = line.partition(":")
        if label.strip() == "Recipient Address":
            address = _plain_address(value)
            if address:
                addresses.append(address)
        elif label.strip() == "Reported error" and not error:
            # The error may run on to the next line.
            error = " ".join([value.strip(), *(x.strip() for x in lines[index + 1 : index + 2])])
    status = _status_in_text(error)
    if status:
        for address in addresses:
            yield address, status, error


def _exim_recipients(text: str, message: EmailMessage) -> Iterator[tuple[str, str, str]]:
    """Exim's text: each address of `X-Failed-Recipients` on its own line, indented two
    spaces, followed by its more-indented error lines."""
    failed = {
        a.lower()
        for _, a in getaddresses([_text(v) for v in message.get_all("X-Failed-Recipients", [])])
    }
    if not failed:
        return
    lines = text.splitlines()
    for index, line in enumerate(lines):
        address = _plain_address(line)
        if address is None or address.lower() not in failed or not line.startswith("  "):
            continue
        detail = []
        for following in lines[index + 1 :]:
            if not following.startswith("    "):
                break
            detail.append(following.strip())
        joined = " ".join(detail)
        status = _status_in_text(joined)
        if status:
            yield address, status, joined


def _exchange_quoted_headers(text: str) -> Message | None:
    """The original headers an Exchange bounce quotes after "Original message headers:"."""
    _, marker, rest = text.partition("Original message headers:")
    if not marker:
        return None
    return Parser(policy=policy.default).parsestr(rest.lstrip("\r\n"), headersonly=True)


def _from_mail_system(message: EmailMessage) -> bool:
    if message.get("X-MS-Exchange-Message-Is-Ndr") is not None:
        return True
    if message.get("X-Failed-Recipients") is not None:
        return True
    sender = _sender(message) or ""
    local = sender.partition("@")[0].lower()
    return local in MAIL_SYSTEM_LOCAL_PARTS or local.startswith("microsoftexchange")


# --- auto-replies (RFC 3834 and the common non-standard marks) ---------------


def _is_auto_reply(message: EmailMessage) -> bool:
    auto_submitted = _text(message.get("Auto-Submitted")).lower()
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        return True
    if message.get("X-Auto-Response-Suppress") is not None:
        return True
    if _text(message.get("Precedence")).lower() == "auto_reply":
        return True
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return True
    subject = " ".join(_text(message.get("Subject")).lower().split())
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
        values += [_text(v) for v in message.get_all(name, [])]
    return any(a.strip().lower() == wanted for _, a in getaddresses(values))


def _unsubscribe(message: EmailMessage, context: InboxContext) -> Classification:
    # Our mailto link's subject is "Unsubscribe ADDRESS from ... News Update".
    words = _text(message.get("Subject")).split()
    named = None
    if len(words) >= 2 and words[0].lower().strip(":") == "unsubscribe":
        named = _plain_address(words[1])
    address = named or _sender(message)
    if address is None:
        return Classification("unclassified", reason="an unsubscribe request that names no address")
    original_id = _text(message.get("In-Reply-To")) or None
    event = InboxEvent(
        "unsubscribe",
        address,
        action="mailto",
        detail="the address named in the subject" if named else "the sender",
        issue_id=issue_for_message_id(original_id, context.message_id_domain),
        original_message_id=original_id,
    )
    return Classification("unsubscribe", (event,))


# --- the returned message and its Message-ID ---------------------------------


def issue_for_message_id(message_id: str | None, domain: str) -> str | None:
    """The issue id inside one of our Message-IDs (`<ISSUE.DIGEST@DOMAIN>`), else None."""
    if not message_id:
        return None
    inner = message_id.strip().removeprefix("<").removesuffix(">")
    local, at, host = inner.rpartition("@")
    if not at or host.lower() != domain.lower():
        return None
    issue_id, dot, digest = local.rpartition(".")
    if not dot or not issue_id or len(digest) != 32 or not set(digest) <= _HEX:
        return None
    return issue_id


def _original_message_id(message: EmailMessage, per_message: Message | None) -> str | None:
    if per_message is not None:
        found = _message_id_text(per_message.get("X-Original-Message-ID"))
        if found:
            return found
    return _message_id_of(_returned_headers(message))


def _returned_headers(message: EmailMessage) -> Message | None:
    """The headers of the message that came back, from a message/rfc822 or text/rfc822-headers part."""
    for part in _parts(message):
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if content_type == "text/rfc822-headers" and isinstance(part, EmailMessage):
            text = part.get_content()
            if isinstance(text, str):
                return Parser(policy=policy.default).parsestr(text, headersonly=True)
    return None


def _message_id_of(headers: Message | None) -> str | None:
    if headers is None:
        return None
    return _message_id_text(headers.get("Message-ID"))


def _message_id_text(value: object) -> str | None:
    text = _text(value).strip()
    if not text:
        return None
    if "<" in text and ">" in text:
        return "<" + text.partition("<")[2].partition(">")[0].strip() + ">"
    return f"<{text}>"


# --- helpers -------------------------------------------------------------------


def _parts(message: Message) -> Iterator[Message]:
    """Every part, without descending into report fields or returned messages."""
    yield message
    if message.get_content_type() in (
        "message/delivery-status",
        "message/feedback-report",
        "message/rfc822",
    ):
        return
    if message.is_multipart():
        for child in message.get_payload():
            if isinstance(child, Message):
                yield from _parts(child)


def _first_part(message: Message, content_type: str) -> Message | None:
    return next((p for p in _parts(message) if p.get_content_type() == content_type), None)


def _text_parts(message: EmailMessage) -> Iterator[str]:
    for part in _parts(message):
        if part.get_content_type() == "text/plain" and isinstance(part, EmailMessage):
            try:
                content = part.get_content()
            except (LookupError, UnicodeError):
                continue
            if isinstance(content, str):
                yield content


def _sender(message: Message) -> str | None:
    for name in ("From", "Sender", "Reply-To"):
        address = _plain_address(parseaddr(_text(message.get(name)))[1])
        if address:
            return address
    return None


def _plain_address(text: str | None) -> str | None:
    """`text` as a bare address (angle brackets and spaces removed), or None if it is not one."""
    if not text:
        return None
    address = text.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c in address for c in ' \t,;<>"()'):
        return None
    return address


def _status_code(text: str) -> str:
    status = text.split()[0] if text.split() else ""
    return status if _STATUS_IN_TEXT.fullmatch(status) else ""


def _status_in_text(text: str) -> str:
    match = _STATUS_IN_TEXT.search(text)
    return ".".join(match.groups()) if match else ""


def _text(value: object) -> str:
    return "" if value is None else " ".join(str(value).split())


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
