"""Reading a returned message safely: parts, addresses, status codes and Message-IDs.

Everything here reads through the standard library's parser. A message is
hostile input: `parse_bytes` refuses one too big or nested too deep before
the parser (which recurses) sees it, and walking its parts stops at
`PART_LIMIT` parts, so the work grows linearly with a message's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, Parser
from email.utils import parseaddr

from newsletter.core.errors import UnreadableMessage

# An enhanced status code (RFC 3463) inside free text: class.subject.detail.
STATUS_IN_TEXT = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_DETAIL_LIMIT = 300
_PARSER = BytesParser(policy=policy.default)
# A bounce is a few parts; these bounds are far above any real one, far below
# what makes the stdlib parser recurse out of its stack.
SIZE_LIMIT = 25 * 1024 * 1024
NESTING_LIMIT = 100
PART_LIMIT = 500
_NESTING_MARKS = re.compile(rb"boundary\s*=|message/(?:rfc822|global|delivery-status)", re.I)


def parse_bytes(raw: bytes) -> EmailMessage:
    """A message from its bytes, with the standard library's modern policy.

    Refuses (UnreadableMessage) a message bigger than SIZE_LIMIT or with more
    nested parts than NESTING_LIMIT: counted on the bytes, in one pass.
    """
    if len(raw) > SIZE_LIMIT:
        raise UnreadableMessage(f"bigger than {SIZE_LIMIT // (1024 * 1024)} MB")
    nesting = sum(1 for _ in _NESTING_MARKS.finditer(raw))
    if nesting > NESTING_LIMIT:
        raise UnreadableMessage(f"more than {NESTING_LIMIT} nested parts")
    parsed = _PARSER.parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def original_message_id(message: EmailMessage, per_message: Message | None) -> str | None:
    if per_message is not None:
        found = message_id_text(per_message.get("X-Original-Message-ID"))
        if found:
            return found
    return message_id_of(returned_headers(message))


def returned_headers(message: EmailMessage) -> Message | None:
    """The headers of the message that came back, from a message/rfc822 or text/rfc822-headers part."""
    for part in message_parts(message):
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


def message_id_of(headers: Message | None) -> str | None:
    if headers is None:
        return None
    return message_id_text(headers.get("Message-ID"))


def message_id_text(value: object) -> str | None:
    text = one_line(value).strip()
    if not text:
        return None
    if "<" in text and ">" in text:
        return "<" + text.partition("<")[2].partition(">")[0].strip() + ">"
    return f"<{text}>"


def message_parts(message: Message) -> Iterator[Message]:
    """Every part, depth first, without descending into report fields or returned messages.

    Stops after PART_LIMIT parts, and walks with its own stack, not recursion.
    """
    stack = [message]
    seen = 0
    while stack and seen < PART_LIMIT:
        part = stack.pop()
        seen += 1
        yield part
        if part.get_content_type() in (
            "message/delivery-status",
            "message/feedback-report",
            "message/rfc822",
        ):
            continue
        if part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            stack.extend(reversed(children))


def first_part(message: Message, content_type: str) -> Message | None:
    return next((p for p in message_parts(message) if p.get_content_type() == content_type), None)


def text_parts(message: EmailMessage) -> Iterator[str]:
    for part in message_parts(message):
        if part.get_content_type() == "text/plain" and isinstance(part, EmailMessage):
            try:
                content = part.get_content()
            except (LookupError, UnicodeError):
                continue
            if isinstance(content, str):
                yield content


def sender_of(message: Message) -> str | None:
    for name in ("From", "Sender", "Reply-To"):
        address = plain_address(parseaddr(one_line(message.get(name)))[1])
        if address:
            return address
    return None


def plain_address(text: str | None) -> str | None:
    """`text` as a bare address (angle brackets and spaces removed), or None if it is not one."""
    if not text:
        return None
    address = text.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c in address for c in ' \t,;<>"()'):
        return None
    return address


def status_code(text: str) -> str:
    status = text.split()[0] if text.split() else ""
    return status if STATUS_IN_TEXT.fullmatch(status) else ""


def status_in_text(text: str) -> str:
    match = STATUS_IN_TEXT.search(text)
    return ".".join(match.groups()) if match else ""


def one_line(value: object) -> str:
    return "" if value is None else " ".join(str(value).split())


def shortened(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
