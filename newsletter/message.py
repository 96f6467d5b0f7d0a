"""Builds the RFC 5322 message for one recipient: headers, both parts, DKIM.

Building a message and delivering it are separate jobs: this module only
builds. Every header value goes through `header_value`, which refuses a CR or
LF, so no name, subject or setting can inject a header. Bodies are
quoted-printable, so no line exceeds 998 characters whatever the HTML.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import dkim

from newsletter.audience import Recipient
from newsletter.content import Issue
from newsletter.errors import ConfigError, HeaderInjectionError
from newsletter.links import unsubscribe_https_url, unsubscribe_mailto
from newsletter.settings import DkimSettings, Settings

# RFC 8058 requires List-Unsubscribe-Post to be covered by the signature;
# dkimpy's default header list leaves it out, so we name every header we sign.
DKIM_SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)
TEST_PREFIX = "[TEST] "
# Long header lines (up to RFC 5322's 998) rather than folding at 78: the
# stdlib folds an over-long URL by turning it into RFC 2047 encoded words,
# which would break List-Unsubscribe for every mail client.
_SMTP_POLICY = policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class PersonalisedEmail:
    """One recipient's subject and both bodies, ready to wrap in a message."""

    subject: str
    html: str
    text: str


def header_value(field: str, value: str) -> str:
    """Return `value` for a header, refusing line breaks that would start a new header."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(
            f"the {field} contains a line break, which is not allowed in an email header: "
            f"{value.splitlines()[0]!r}..."
        )
    return value


def _address(field: str, name: str, email: str) -> Address:
    header_value(f"{field} name", name)
    header_value(f"{field} address", email)
    local, _, domain = email.strip().rpartition("@")
    return Address(display_name=name.strip(), username=local, domain=domain)


def message_id_for(issue_id: str, address: str, domain: str) -> str:
    """The same Message-ID every time this issue goes to this address, so a retry is recognisable."""
    digest = hashlib.sha256(f"{issue_id}\0{address.strip().lower()}".encode()).hexdigest()[:32]
    return f"<{issue_id}.{digest}@{domain}>"


def sender_domain(settings: Settings) -> str:
    return settings.from_address.rpartition("@")[2]


def build_message(
    settings: Settings,
    issue: Issue,
    recipient: Recipient,
    email: PersonalisedEmail,
    *,
    test: bool = False,
    date: datetime | None = None,
) -> EmailMessage:
    """A complete multipart/alternative message (text first, then HTML) for one recipient.

    A test copy (`test=True`) gets `[TEST]` in its subject and a fresh Message-ID,
    so it can never be mistaken for, or deduplicated with, the real send.
    """
    msg = EmailMessage(policy=policy.default)
    msg["From"] = _address("sender", settings.from_name, settings.from_address)
    msg["To"] = _address("recipient", recipient.name, recipient.email)
    subject = header_value("subject", email.subject)
    msg["Subject"] = TEST_PREFIX + subject if test else subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    domain = sender_domain(settings)
    msg["Message-ID"] = (
        make_msgid(idstring="test", domain=domain)
        if test
        else message_id_for(issue.id, recipient.email, domain)
    )
    msg["Reply-To"] = header_value("reply-to address", issue.reply_to)
    list_name = header_value("organisation", f"{settings.organisation} News Update")
    msg["List-Id"] = f'"{_quote(list_name)}" <{header_value("list id", settings.list_id)}>'
    unsubscribe = [unsubscribe_mailto(settings, issue, recipient.email)]
    https_url = unsubscribe_https_url(settings, issue, recipient.email)
    if https_url:
        unsubscribe.append(https_url)
    msg["List-Unsubscribe"] = ", ".join(
        f"<{header_value('unsubscribe link', u)}>" for u in unsubscribe
    )
    if https_url:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Newsletter-Issue"] = issue.id
    msg.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if settings.dkim is not None:
        sign_message(msg, settings.dkim)
    return msg


def _quote(phrase: str) -> str:
    return phrase.replace("\\", "\\\\").replace('"', '\\"')


def message_bytes(msg: EmailMessage) -> bytes:
    """The message as sent on the wire: CRLF line endings, every line within 998 octets."""
    return msg.as_bytes(policy=_SMTP_POLICY)


def sign_message(msg: EmailMessage, settings: DkimSettings) -> None:
    """Add a DKIM-Signature covering the headers Gmail, Yahoo and RFC 8058 need."""
    present = [h for h in DKIM_SIGNED_HEADERS if msg.get(h.decode()) is not None]
    try:
        signature = dkim.sign(
            message_bytes(msg),
            settings.selector.encode(),
            settings.domain.encode(),
            settings.private_key.reveal().encode(),
            include_headers=present,
            canonicalize=(b"relaxed", b"relaxed"),
        )
    except dkim.DKIMException as error:
        # dkimpy's messages name the key problem, never the key itself.
        raise ConfigError(f"the message could not be DKIM-signed: {error}") from None
    name, _, value = signature.decode("ascii").partition(":")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", value).strip()
    msg[name] = unfolded
