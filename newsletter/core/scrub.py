"""Keeping secrets out of every text we show or store.

A server or provider may echo what it was sent: a password, an API key, or
the base64 forms in which they travel (SMTP AUTH PLAIN and LOGIN, HTTP Basic
auth). Every transport passes the text it builds from an answer or an
exception through one `SecretScrubber` before it reaches a result, an error
or the ledger.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

MASK = "********"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class SecretScrubber:
    """Replaces each secret, and the base64 forms it travels in, with asterisks.

    `secrets` are replaced as they are and in base64 (SMTP AUTH LOGIN sends
    each one encoded); `credentials` are whole strings that travel only in
    base64, such as `\\0user\\0password` (AUTH PLAIN) or `key:secret` (Basic auth).
    """

    def __init__(self, secrets: Iterable[str] = (), *, credentials: Iterable[str] = ()) -> None:
        values = [s for s in secrets if s]
        forms = {*values, *map(_b64, values), *(_b64(c) for c in credentials if c)}
        # Longest first, so a secret that contains another is replaced whole.
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return text
