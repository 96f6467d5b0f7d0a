"""One message to one recipient over an open SMTP session: MAIL, RCPT, DATA.

International addresses: RCPT and MAIL carry the domain in IDNA form, which
every server takes. A message with a non-ASCII local part (in the envelope
or its headers) is sent with `SMTPUTF8 BODY=8BITMIME` when the server offers
SMTPUTF8; when it does not, that recipient fails permanently with a reason
that says so (`Undeliverable`), and everyone else is still sent. When it is
our own address that has one, every message would fail: the run stops.
"""

from __future__ import annotations

import smtplib

from newsletter.core.errors import DeliveryError
from newsletter.render.message import envelope_address
from newsletter.transports.smtp.connection import Reply, reply_text


class Undeliverable(Exception):
    """This recipient cannot be sent through this server at all (no command was sent)."""


def transmit(
    connection: smtplib.SMTP, envelope_from: str, recipient: str, data: bytes, where: str
) -> str:
    """MAIL, RCPT, DATA for one recipient; return the final reply text (`Reply` if refused).

    `where` names the server (host:port) in what a person reads.
    """
    sender, rcpt = envelope_address(envelope_from), envelope_address(recipient)
    options = []
    if connection.does_esmtp and connection.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    if not (rcpt.isascii() and sender.isascii() and data.isascii()):
        options += _utf8_options(connection, recipient, rcpt, sender, where)
    code, text = connection.mail(sender, options)
    if code != 250:
        raise Reply("MAIL", code, reply_text(text))
    code, text = connection.rcpt(rcpt)
    if code not in (250, 251):
        raise Reply("RCPT", code, reply_text(text))
    try:
        code, text = connection.data(data)
    except smtplib.SMTPDataError as error:  # refused the DATA command itself
        raise Reply.of("DATA", error) from None
    if code != 250:
        raise Reply("DATA", code, reply_text(text))
    return reply_text(text)


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
