"""Builds the RFC 5322 message for one recipient: headers, both parts, DKIM.

Building a message and delivering it are separate jobs: this module only
builds. Every header value goes through `header_value`, which refuses a CR or
LF, so no name, subject or setting can inject a header. Bodies are
quoted-printable, so no line exceeds 998 characters whatever the HTML.

International addresses: a domain always travels in its IDNA (A-label) form,
in the headers and the SMTP envelope alike, so `anna@bücher.example` needs
nothing special from any server. A local part with non-ASCII characters
(`jörg@example.org`) has no ASCII form at all: it is written as UTF-8 (RFC
6532) and only a server that offers SMTPUTF8 (RFC 6531) can carry it, which
the transport checks per recipient. Display names stay RFC 2047 encoded words.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, make_msgid

from newsletter.audience.lists import Recipient
from newsletter.content.issue import Issue
from newsletter.core.errors import ConfigError, HeaderInjectionError
from newsletter.core.settings import DkimSettings, Secret, Settings
from newsletter.core.signing import message_digest, return_path_token, tagged_return_path
from newsletter.render.links import unsubscribe_https_url, unsubscribe_mailto

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
    """One recipient's subject and both bodies, ready to wrap in a message.

    When the renderer knows them, `html_pieces`/`text_pieces` hold the same
    bodies as alternating shared and personal pieces (shared, personal,
    shared, ...): the message builder then encodes the shared pieces once per
    variant instead of once per recipient.
    """

    subject: str
    html: str
    text: str
    html_pieces: tuple[str, ...] = ()
    text_pieces: tuple[str, ...] = ()


def header_value(field: str, value: str) -> str:
    """Return `value` for a header, refusing line breaks that would start a new header."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(
            f"the {field} contains a line break, which is not allowed in an email header: "
            f"{value.splitlines()[0]!r}..."
        )
    return value


def message_id_for(issue_id: str, address: str, domain: str, secret: Secret | None) -> str:
    """The same Message-ID every time this issue goes to this address, so a retry is recognisable.

    Keyed with the project's secret (`core.signing.message_digest`), so a
    returned message quoting it proves which address we sent it to.
    """
    digest = message_digest(secret.reveal() if secret else None, issue_id, address)
    return f"<{issue_id}.{digest}@{domain}>"


def return_path_for(settings: Settings, issue_id: str, address: str) -> str | None:
    """The envelope sender (MAIL FROM) of this issue's message to `address`, tagged (VERP).

    `bounce_address` (else the From address) with plus addressing:
    `bounces+TOKEN@example.org`, where TOKEN is signed for this issue and
    recipient. Bounces are delivered there, so `inbox` can tell ours from
    forgeries. None without a secret: the plain address is used.
    """
    if not settings.unsubscribe_secret:
        return None
    token = return_path_token(settings.unsubscribe_secret.reveal(), issue_id, address)
    return tagged_return_path(settings.bounce_address or settings.from_address, token)


def envelope_address(address: str) -> str:
    """`address` as it travels on the wire: its domain in IDNA (A-label) form.

    `anna@bücher.example` becomes `anna@xn--bcher-kva.example`. A non-ASCII
    local part stays as written (in email-validator's normalised form): only
    SMTPUTF8 can carry it, so the result is then not ASCII. An address the validator
    refuses is returned unchanged; the audience and settings loaders have
    refused it long before a message is built.
    """
    address = address.strip()
    if address.isascii():
        return address
    # Imported here: 20 ms that every command building messages would pay for
    # the rare address that is not ASCII.
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return address
    return f"{checked.local_part}@{checked.ascii_domain}"


def sender_domain(settings: Settings) -> str:
    """The sender's domain in ASCII (IDNA) form, as Message-IDs carry it."""
    return envelope_address(settings.from_address).rpartition("@")[2]


class MessageBuilder:
    """Builds the wire bytes of one issue's messages, recipient after recipient.

    Everything that is the same for every recipient (sender, subject, date,
    list headers, MIME skeleton) is encoded once. Per recipient, only the To,
    Message-ID and unsubscribe headers are encoded, and the two bodies are
    quoted-printable encoded by `binascii.b2a_qp` (C). The stdlib's generator
    took ~6 ms a message, the whole cost of a send; this takes a fraction of a
    millisecond. Every piece is still produced by a stdlib encoder
    (`email.header`, `email.utils`, `binascii`), and tests parse the result
    back with the stdlib parser.

    No line of a built message starts with ".": header lines start with a
    name or folding white space, and the bodies' quoted-printable encodes a
    line-leading dot as `=2E`. So SMTP's DATA needs no dot-stuffing pass over
    each message (`OutgoingMessage.dot_free`). One builder serves a whole run:
    `redate` changes the Date header and keeps the per-variant encodings.
    """

    def __init__(self, settings: Settings, issue: Issue, *, date: datetime | None = None) -> None:
        self.settings = settings
        self.issue = issue
        self.domain = sender_domain(settings)
        # `=_` cannot occur in quoted-printable text, so the boundary never collides.
        self._boundary = "=_newsletter_" + secrets.token_hex(12)
        list_name = header_value("organisation", f"{settings.organisation} News Update")
        self._from = _address_header(
            "From", _address("sender", settings.from_name, settings.from_address)
        )
        self._date = _header("Date", format_datetime(date or datetime.now(UTC)))
        self._list_headers = b"".join(
            (
                _address_header("Reply-To", _address("reply-to", "", issue.reply_to)),
                _header(
                    "List-Id",
                    f"{_phrase(list_name)} <{header_value('list id', settings.list_id)}>",
                ),
            )
        )
        self._trailer_headers = _header("X-Newsletter-Issue", issue.id) + (
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="'
            + self._boundary.encode()
            + b'"\r\n\r\n'
        )
        part_head = '--{b}\r\nContent-Type: text/{sub}; charset="utf-8"\r\n' + (
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self._text_head = part_head.format(b=self._boundary, sub="plain").encode()
        self._html_head = ("\r\n" + part_head.format(b=self._boundary, sub="html")).encode()
        self._end = f"\r\n--{self._boundary}--\r\n".encode()
        self._subjects: dict[tuple[str, bool | str], bytes] = {}
        self._shared: dict[tuple[str, bool], bytes] = {}

    def redate(self, date: datetime) -> None:
        """Date the messages built from now on `date` (a run re-dates each batch)."""
        self._date = _header("Date", format_datetime(date))

    def message_id(self, recipient: Recipient) -> str:
        return message_id_for(
            self.issue.id, recipient.email, self.domain, self.settings.unsubscribe_secret
        )

    def _subject(self, subject: str, test: bool | str) -> bytes:
        cached = self._subjects.get((subject, test))
        if cached is None:
            text = header_value("subject", subject)
            if isinstance(test, str):
                text = f"[TEST: {header_value('test copy label', test)}] {text}"
            elif test is not False:
                text = TEST_PREFIX + text
            cached = _header("Subject", text)
            self._subjects[(subject, test)] = cached
        return cached

    def build(
        self, recipient: Recipient, email: PersonalisedEmail, *, test: bool | str = False
    ) -> bytes:
        """The complete message for one recipient, CRLF line endings, DKIM-signed if set up.

        A test copy (`test=True`) gets `[TEST]` in its subject and a fresh
        Message-ID, so it can never be mistaken for, or deduplicated with, the
        real send; `test="health, police"` makes the marker `[TEST: health, police]`.
        """
        settings, issue = self.settings, self.issue
        message_id = (
            make_msgid(idstring="test", domain=self.domain)
            if test is not False
            else self.message_id(recipient)
        )
        unsubscribe = [unsubscribe_mailto(settings, issue, recipient.email)]
        https_url = unsubscribe_https_url(settings, issue, recipient.email)
        if https_url:
            unsubscribe.append(https_url)
        raw = b"".join(
            (
                self._from,
                _address_header("To", _address("recipient", recipient.name, recipient.email)),
                self._subject(email.subject, test),
                self._date,
                _header("Message-ID", message_id),
                self._list_headers,
                _header(
                    "List-Unsubscribe",
                    ", ".join(f"<{header_value('unsubscribe link', u)}>" for u in unsubscribe),
                ),
                b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" if https_url else b"",
                self._trailer_headers,
                self._text_head,
                self._body(email.text, email.text_pieces),
                self._html_head,
                self._body(email.html, email.html_pieces),
                self._end,
            )
        )
        if settings.dkim is not None:
            raw = dkim_signature(raw, settings.dkim) + raw
        return raw

    def _body(self, whole: str, pieces: tuple[str, ...]) -> bytes:
        """A body as quoted-printable; shared pieces come from the per-variant cache."""
        if not pieces:
            return _quoted_printable(whole)
        last = len(pieces) - 1
        encoded = []
        for index, piece in enumerate(pieces):
            key = (piece, index == last)
            if index % 2 == 0 and key in self._shared:
                encoded.append(self._shared[key])
                continue
            chunk = _quoted_printable(piece)
            if index != last and not piece.endswith("\n"):
                chunk = _soft_break(chunk)
            if index % 2 == 0:
                self._shared[key] = chunk
            encoded.append(chunk)
        return b"".join(encoded)


def _soft_break(encoded: bytes) -> bytes:
    """`encoded` then a quoted-printable soft line break, no line over 76 octets.

    Pieces encoded separately are joined by soft breaks (invisible once
    decoded), so a personal value never lengthens a shared piece's line.
    """
    last_line_start = encoded.rfind(b"\n") + 1
    if len(encoded) - last_line_start <= 75:
        return encoded + b"=\r\n"
    cut = last_line_start + 75
    while b"=" in encoded[cut - 2 : cut]:  # never split an =XX escape
        cut -= 1
    return encoded[:cut] + b"=\r\n" + encoded[cut:] + b"=\r\n"


def _header(name: str, value: str) -> bytes:
    """One header line; non-ASCII values become RFC 2047 encoded words, folded with CRLF."""
    if value.isascii():
        return f"{name}: {value}\r\n".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _address_header(name: str, value: str) -> bytes:
    """An address header from `_address`: ASCII, or UTF-8 only in an SMTPUTF8 address (RFC 6532)."""
    return f"{name}: {value}\r\n".encode()


def _address(field: str, name: str, address: str) -> str:
    """`Name <address>` with the name RFC 2047 encoded and the domain in IDNA form."""
    header_value(f"{field} name", name)
    header_value(f"{field} address", address)
    return format_address(name, address)


# formataddr insists on an ASCII address (it predates RFC 6532); its encoding of
# the display name is borrowed with this stand-in and the real address put back.
_STAND_IN = "x@x"


def format_address(name: str, address: str) -> str:
    """`Name <address>` for a header or an API's address field, never raising on non-ASCII.

    The name is quoted, or RFC 2047 encoded when it is not ASCII; the domain
    is in IDNA form; a non-ASCII local part stays UTF-8 (RFC 6532).
    """
    name, address = name.strip(), envelope_address(address)
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    if not name:
        return address
    shown = formataddr((name, _STAND_IN), charset="utf-8")
    return shown.removesuffix(f"<{_STAND_IN}>") + f"<{address}>"


def _phrase(phrase: str) -> str:
    """A display phrase, quoted (ASCII) or encoded (non-ASCII)."""
    if phrase.isascii():
        return '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return Header(phrase, "utf-8").encode()


def _quoted_printable(text: str) -> bytes:
    """A body as quoted-printable with CRLF line breaks: no line over 76 octets, none starting ".".

    `b2a_qp` wraps long lines wherever 76 octets fall, so a wrapped line can
    start with a dot (a web address wrapped before ".org"); `=2E` is that dot.
    """
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    if encoded.startswith(b".") or b"\n." in encoded:
        encoded = b"\n".join(_without_leading_dot(line) for line in encoded.split(b"\n"))
    return encoded.replace(b"\n", b"\r\n")


def _without_leading_dot(line: bytes) -> bytes:
    """One encoded line with a leading "." as `=2E`, re-wrapped if that makes it over 76 octets."""
    if not line.startswith(b"."):
        return line
    line = b"=2E" + line[1:]
    if len(line) <= 76:
        return line
    cut = 75
    while b"=" in line[cut - 2 : cut]:  # never split an =XX escape
        cut -= 1
    return line[:cut] + b"=\n" + _without_leading_dot(line[cut:])


def build_message_bytes(
    settings: Settings,
    issue: Issue,
    recipient: Recipient,
    email: PersonalisedEmail,
    *,
    test: bool | str = False,
    date: datetime | None = None,
) -> bytes:
    """One message's wire bytes; for many recipients, keep one `MessageBuilder` instead."""
    return MessageBuilder(settings, issue, date=date).build(recipient, email, test=test)


def build_message(
    settings: Settings,
    issue: Issue,
    recipient: Recipient,
    email: PersonalisedEmail,
    *,
    test: bool | str = False,
    date: datetime | None = None,
) -> EmailMessage:
    """The same message as an `EmailMessage`, for writing .eml files and reading headers."""
    raw = build_message_bytes(settings, issue, recipient, email, test=test, date=date)
    return parse_message(raw)


def parse_message(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def message_bytes(msg: EmailMessage) -> bytes:
    """The message as sent on the wire: CRLF line endings, every line within 998 octets."""
    return msg.as_bytes(policy=_SMTP_POLICY)


def dkim_signature(raw: bytes, settings: DkimSettings) -> bytes:
    """A DKIM-Signature header line for `raw`, covering the headers Gmail, Yahoo and RFC 8058 need."""
    import dkim  # 40 ms of imports (dnspython) that only signing needs

    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    present = [h for h in DKIM_SIGNED_HEADERS if h.lower() + b":" in head]
    try:
        signature: bytes = dkim.sign(
            raw,
            settings.selector.encode(),
            settings.domain.encode(),
            settings.private_key.reveal().encode(),
            include_headers=present,
            canonicalize=(b"relaxed", b"relaxed"),
            linesep=b"\r\n",
        )
    except dkim.DKIMException as error:
        # dkimpy's messages name the key problem, never the key itself.
        raise ConfigError(f"the message could not be DKIM-signed: {error}") from None
    return signature
