"""One message to one recipient over an open SMTP session: MAIL, RCPT, DATA.

Where the server offers PIPELINING (RFC 2920: Postfix, Exchange Online and
most relays do), MAIL, RCPT and DATA go in one write and their three replies
are read together, then the message: two round trips a message instead of
four. The replies are still read and judged one by one, in order, so a
refusal is reported at the stage that refused, exactly as without it.

International addresses: RCPT and MAIL carry the domain in IDNA form, which
every server takes. A message with a non-ASCII local part (in the envelope
or its headers) is sent with `SMTPUTF8 BODY=8BITMIME` when the server offers
SMTPUTF8; when it does not, that recipient fails permanently with a reason
that says so (`Undeliverable`), and everyone else is still sent. When it is
our own address that has one, every message would fail: the run stops.
"""

from __future__ import annotations

import re
import smtplib

from newsletter.core.errors import DeliveryError
from newsletter.render.message import envelope_address
from newsletter.transports.smtp.connection import SERVICE_CLOSING, Reply, reply_text


class Undeliverable(Exception):
    """This recipient cannot be sent through this server at all (no command was sent)."""


def transmit(
    connection: smtplib.SMTP,
    envelope_from: str,
    recipient: str,
    data: bytes,
    where: str,
    *,
    dot_free: bool = False,
) -> str:
    """MAIL, RCPT, DATA for one recipient; return the final reply text (`Reply` if refused).

    `where` names the server (host:port) in what a person reads; `dot_free`
    says no line of `data` starts with "." (see `data_block`).
    """
    sender, rcpt = envelope_address(envelope_from), envelope_address(recipient)
    options = []
    if connection.does_esmtp and connection.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    block = data_block(data, dot_free)
    if not (rcpt.isascii() and sender.isascii() and data.isascii()):
        options += _utf8_options(connection, recipient, rcpt, sender, where)
    elif connection.has_extn("pipelining"):
        return _pipelined(connection, sender, rcpt, options, block)
    code, text = connection.mail(sender, options)
    if code != 250:
        raise Reply("MAIL", code, reply_text(text))
    code, text = connection.rcpt(rcpt)
    if code not in (250, 251):
        raise Reply("RCPT", code, reply_text(text))
    code, text = connection.docmd("DATA")
    if code != 354:
        raise Reply("DATA", code, reply_text(text))
    return _message(connection, block)


def _pipelined(
    connection: smtplib.SMTP, sender: str, rcpt: str, options: list[str], block: bytes
) -> str:
    """MAIL, RCPT and DATA in one write (RFC 2920), then the DATA `block`; the final reply's text.

    Every reply the server owes is read before a refusal is raised, so the
    session stays in step for the RSET that follows. A 421 is the exception:
    the server closes the line after it and answers nothing more.
    """
    mail_from = " ".join([f"MAIL FROM:{_angle_quoted(sender)}", *options])
    connection.send(f"{mail_from}\r\nRCPT TO:{_angle_quoted(rcpt)}\r\nDATA\r\n")
    replies: list[tuple[str, int, bytes]] = []
    for stage in ("MAIL", "RCPT", "DATA"):
        code, text = connection.getreply()
        if code == SERVICE_CLOSING:
            raise Reply(stage, code, reply_text(text))
        replies.append((stage, code, text))
    (_, mail_code, _), (_, rcpt_code, _), (_, data_code, _) = replies
    accepted = mail_code == 250 and rcpt_code in (250, 251)
    if data_code == 354 and not accepted:
        # A server that took DATA with nobody to deliver to waits for a message:
        # an empty one ends the transaction, and it refuses it (RFC 2920 §3.1).
        connection.send(b".\r\n")
        connection.getreply()
    for (stage, code, text), wanted in zip(replies, ((250,), (250, 251), (354,)), strict=True):
        if code not in wanted:
            raise Reply(stage, code, reply_text(text))
    return _message(connection, block)


def _angle_quoted(address: str) -> str:
    """`<address>` as smtplib's `quoteaddr` makes it, without its parser for a plain address."""
    if address.isprintable() and not any(c in address for c in ' <>"(),;:\\'):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _message(connection: smtplib.SMTP, block: bytes) -> str:
    """After a 354: the message and its final reply (as smtplib's `data` sends them)."""
    connection.send(block)
    code, text = connection.getreply()
    if code != 250:
        raise Reply("DATA", code, reply_text(text))
    return reply_text(text)


def data_block(data: bytes, dot_free: bool = False) -> bytes:
    """The message as DATA carries it: lines starting with "." doubled, then CRLF.CRLF.

    The same bytes smtplib's `data` sends. Finding line-leading dots costs a
    pass over the whole message (most of a bare smtplib loop's time), so a
    message known to have none (`dot_free`, as `MessageBuilder` makes them)
    skips it.
    """
    if not dot_free and (data.startswith(b".") or b"\n." in data):
        data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _utf8_options(
    connection: smtplib.SMTP, recipient: str, rcpt: str, sender: str, where: str
) -> list[str]:
    """MAIL options for a message with UTF-8 addresses, or why this server cannot take it."""
    if connection.has_extn("smtputf8"):
        # smtplib then sends MAIL and RCPT as UTF-8 (it switches back on RSET);
        # the headers are 8-bit, so say so where the server knows BODY=.
        body = ["BODY=8BITMIME"] if connection.has_extn("8bitmime") else []
        return ["SMTPUTF8", *body]
    if rcpt.isascii() or not sender.isascii():  # our own address: every message would fail
        raise DeliveryError(
            f"the sender or reply-to address has non-ASCII characters before the @, and the "
            f"SMTP server {where} does not offer SMTPUTF8, which such addresses need; "
            "use an ASCII address for `from.address` and `reply_to`, or a relay that offers it"
        )
    raise Undeliverable(
        f"the address {recipient} has non-ASCII characters before the @, which only a "
        f"server offering SMTPUTF8 can carry, and the SMTP server {where} does not "
        "offer it; ask the relay's administrators to enable SMTPUTF8, or ask this "
        "person for an address without accents"
    )
