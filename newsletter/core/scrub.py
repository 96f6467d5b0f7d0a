"""Keeping secrets out of every text we show or store.

A server or provider may echo what it was sent, in the encoding it was sent
in: a password, an API key or a client secret as it is, URL-encoded (a form
post such as an OAuth2 token request, a query string) or in base64 (SMTP
AUTH PLAIN and LOGIN, HTTP Basic auth, XOAUTH2). Every transport passes the
text it builds from an answer or an exception through one `SecretScrubber`
before it reaches a result, an error or the ledger; this is the only place
that knows those encodings.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "********"


def _base64_forms(text: str) -> set[str]:
    """Standard and URL-safe base64, with and without the `=` padding some servers drop."""
    data = text.encode()
    forms = {base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()}
    return forms | {form.rstrip("=") for form in forms}


def _url_forms(text: str) -> set[str]:
    """As a form post or query string carries it: `%7E` or `~`, `+` or `%20` for a space."""
    forms = {quote(text, safe=""), quote_plus(text, safe=""), quote(text, safe="~")}
    # Some encoders write the escapes in lower case.
    return forms | {_lower_escapes(form) for form in forms}


def _lower_escapes(text: str) -> str:
    parts = text.split("%")
    return parts[0] + "".join("%" + part[:2].lower() + part[2:] for part in parts[1:])


def secret_forms(secret: str) -> set[str]:
    """Every form in which `secret` may come back: as it is, URL-encoded, base64."""
    if not secret:
        return set()
    return {secret} | _url_forms(secret) | _base64_forms(secret)


class SecretScrubber:
    """Replaces each secret, in every encoding it travels in, with asterisks.

    `secrets` are replaced as they are, URL-encoded and in base64 (SMTP AUTH
    LOGIN sends each one encoded; a token endpoint may echo a form field);
    `credentials` are whole strings that travel only in base64, such as
    `\\0user\\0password` (AUTH PLAIN), `key:secret` (Basic auth) or an
    XOAUTH2 response. Scrubbing is idempotent and never shortens a mask.
    """

    def __init__(self, secrets: Iterable[str] = (), *, credentials: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            forms |= secret_forms(secret)
        for credential in credentials:
            if credential:
                forms |= _base64_forms(credential)
        # Longest first, so a secret that contains another is replaced whole.
        self._forms = tuple(sorted(forms - {""}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return text
