"""What an SMTP refusal is about: this recipient, or the message, the sender or the relay.

Only a refusal about the recipient may mark them `failed-permanent` and put
them on the suppression list. Anything else (a content filter's `554 5.7.1`
at the end of DATA, a message too big, a refused sender, relaying denied) is
the same for everyone on the list, so the run must stop with one message and
suppress nobody. Each message goes to one recipient, so a refusal at DATA can
still be about that recipient when its enhanced code says so.

Enhanced status codes (RFC 3463 §3.2-3.9, "class.subject.detail"): subject 1
is addressing and subject 2 the mailbox, both about the recipient except
5.1.7/5.1.8 (the sender's address) and 5.2.3 (the message is too long);
subject 3 (mail system: too big), 5 (protocol), 6 (content) and 7 (security
and policy) are about the message, the sender or the relay. At RCPT, 5.4.1
and 5.4.4 are about the recipient's domain (Microsoft 365 answers an
unknown recipient of its tenants "550 5.4.1 Recipient address rejected:
Access denied"). Without an enhanced code (or with 5.0.0, "other"), RFC 5321
§4.2.2's basic codes decide: 550, 551, 552 and 553 at RCPT are about the
mailbox; everything else is not.
"""

from __future__ import annotations

import re
from typing import Literal

Scope = Literal["recipient", "message"]

# "5.1.1" at the start of a reply's text, the enhanced status code of RFC 2034.
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_RECIPIENT_BASIC_CODES = frozenset({550, 551, 552, 553})


def enhanced_status(text: str) -> tuple[int, int, int] | None:
    """The enhanced status code at the start of a reply's text (RFC 2034), if there is one."""
    found = _ENHANCED.match(text)
    if found is None:
        return None
    klass, subject, detail = (int(part) for part in found.groups())
    return klass, subject, detail


def refusal_scope(stage: str, code: int, text: str) -> Scope:
    """Whether a 5xx reply at `stage` (MAIL, RCPT or DATA) is about the recipient or not."""
    if stage == "MAIL":
        return "message"  # the sender's address
    status = enhanced_status(text)
    if status is not None and status[1] != 0:
        _, subject, detail = status
        if subject == 1:
            return "message" if detail in (7, 8) else "recipient"
        if subject == 2:
            return "message" if detail == 3 else "recipient"
        if subject == 4 and stage == "RCPT" and detail in (1, 4):
            return "recipient"
        return "message"
    if stage == "RCPT" and code in _RECIPIENT_BASIC_CODES:
        return "recipient"
    return "message"
