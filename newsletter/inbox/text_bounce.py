"""Bounces without a DSN part: the text Postfix, Exchange / Office 365 and Exim write."""

from __future__ import annotations

from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import Parser
from email.utils import getaddresses

from newsletter.inbox.dsn import bounce_kind
from newsletter.inbox.events import Classification, InboxContext, InboxEvent, issue_for_message_id
from newsletter.inbox.mime import (
    message_id_of,
    message_id_text,
    one_line,
    plain_address,
    returned_headers,
    sender_of,
    shortened,
    status_in_text,
    text_parts,
)

MAIL_SYSTEM_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})


def plain_text_bounce(message: EmailMessage, context: InboxContext) -> Classification | None:
    warning_only = False
    found: dict[str, tuple[str, str]] = {}
    quoted_headers: Message | None = None
    for text in text_parts(message):
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
    original = returned_headers(message) or quoted_headers
    original_id = message_id_of(original) or message_id_text(message.get("In-Reply-To"))
    issue_id = issue_for_message_id(original_id, context.message_id_domain)
    events = tuple(
        InboxEvent(
            bounce_kind("delayed" if warning_only else "failed", status, detail),
            address,
            status=status,
            action="delayed" if warning_only else "failed",
            detail=shortened(detail),
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
        address = plain_address(address_text)
        if address is None:
            continue
        detail = [rest.partition(":")[2].strip()]
        for following in lines[index + 1 :]:
            if not following.startswith((" ", "\t")) or not following.strip():
                break
            detail.append(following.strip())
        joined = " ".join(detail)
        status = status_in_text(joined)
        if status:
            yield address, status, joined


def _exchange_recipients(text: str) -> Iterator[tuple[str, str, str]]:
    """Exchange's administrator section: an address line, then "Remote Server returned '550 ...'"
    or "#550 5.1.1 ... ##" (the section's heading is translated; these lines are not)."""
    body = text.partition("Original message headers:")[0]
    lines = [line.strip() for line in body.splitlines()]
    for index, line in enumerate(lines):
        address = plain_address(line.partition("<mailto:")[0])
        if address is None:
            continue
        for following in lines[index + 1 : index + 3]:
            status = status_in_text(following)
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
            address = plain_address(value)
            if address:
                addresses.append(address)
        elif label.strip() == "Reported error" and not error:
            # The error may run on to the next line.
            error = " ".join([value.strip(), *(x.strip() for x in lines[index + 1 : index + 2])])
    status = status_in_text(error)
    if status:
        for address in addresses:
            yield address, status, error


def _exim_recipients(text: str, message: EmailMessage) -> Iterator[tuple[str, str, str]]:
    """Exim's text: each address of `X-Failed-Recipients` on its own line, indented two
    spaces, followed by its more-indented error lines."""
    failed = {
        a.lower()
        for _, a in getaddresses([one_line(v) for v in message.get_all("X-Failed-Recipients", [])])
    }
    if not failed:
        return
    lines = text.splitlines()
    for index, line in enumerate(lines):
        address = plain_address(line)
        if address is None or address.lower() not in failed or not line.startswith("  "):
            continue
        detail = []
        for following in lines[index + 1 :]:
            if not following.startswith("    "):
                break
            detail.append(following.strip())
        joined = " ".join(detail)
        status = status_in_text(joined)
        if status:
            yield address, status, joined


def _exchange_quoted_headers(text: str) -> Message | None:
    """The original headers an Exchange bounce quotes after "Original message headers:"."""
    _, marker, rest = text.partition("Original message headers:")
    if not marker:
        return None
    return Parser(policy=policy.default).parsestr(rest.lstrip("\r\n"), headersonly=True)


def from_mail_system(message: EmailMessage) -> bool:
    if message.get("X-MS-Exchange-Message-Is-Ndr") is not None:
        return True
    if message.get("X-Failed-Recipients") is not None:
        return True
    sender = sender_of(message) or ""
    local = sender.partition("@")[0].lower()
    return local in MAIL_SYSTEM_LOCAL_PARTS or local.startswith("microsoftexchange")
