"""Every token made with the project's signing key, and their checks: one place uses the key.

The key is NEWSLETTER_UNSUBSCRIBE_SECRET (`Settings.unsubscribe_secret`).
What comes back to us is hostile until it proves it answers a message we
sent, and only a value an outsider cannot compute can prove that. So every
token is an HMAC-SHA256 under the key, over a purpose and what it vouches
for; the purpose keeps a token made for one use from being replayed as
another (an unsubscribe link as a resubscribe, a Message-ID as a link):

- `address_token`: one-click unsubscribe / resubscribe links, and the
  reference carried in the mailto: unsubscribe subject.
- `message_digest`: the digest inside our Message-IDs (`<ISSUE.DIGEST@DOMAIN>`),
  per issue and recipient, so a retry keeps its Message-ID and a returned
  message quoting it names who it was sent to.
- `return_path_token`: the VERP tag of the envelope sender
  (`bounces+TOKEN@domain`), per issue and recipient; a bounce is delivered to
  that address, so its To / Delivered-To / X-Original-To carries the tag even
  when the bounce quotes nothing of our message.

Without a key nothing can be verified: Message-IDs fall back to an unkeyed
digest (as before keys existed), the return path stays untagged, and
`inbox` lists every bounce, complaint and mailed unsubscribe for a person.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

UNSUBSCRIBE = "unsubscribe"
RESUBSCRIBE = "resubscribe"
MESSAGE_ID = "message-id"
RETURN_PATH = "return-path"
# 20 base32 characters (100 bits): short enough for a 64-character local part.
RETURN_PATH_TOKEN_LENGTH = 20
RETURN_PATH_TOKEN = re.compile(rf"\+([a-z2-7]{{{RETURN_PATH_TOKEN_LENGTH}}})@", re.IGNORECASE)
# A reference as it appears in a mailto: subject or body: "ref 0123...", 32 hex digits.
MAILTO_REFERENCE = re.compile(r"\bref[:\s]+([0-9a-f]{32})\b", re.IGNORECASE)


def _mac(secret: str, *fields: str) -> bytes:
    return hmac.new(secret.encode(), "\0".join(fields).encode(), hashlib.sha256).digest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8", "replace"))


def _key(address: str) -> str:
    return address.strip().lower()


def address_token(secret: str, purpose: str, list_id: str, address: str) -> str:
    """An HMAC-SHA256 over (purpose, list, address), so links can't be forged or moved.

    The address is compared case-insensitively, as everywhere else; 128 bits
    of the MAC are kept to keep links short.
    """
    return _mac(secret, purpose, list_id, _key(address)).hex()[:32]


def address_token_is_valid(
    secret: str, purpose: str, list_id: str, address: str, token: str
) -> bool:
    """Whether `token` is the one `address_token` gives (compared in constant time)."""
    return _same(address_token(secret, purpose, list_id, address), token)


def message_digest(secret: str | None, issue_id: str, address: str) -> str:
    """The 32 hex digits of our Message-ID for this issue and recipient.

    Keyed when there is a secret; without one it is the old unkeyed hash,
    which anyone can compute, so it proves nothing (`inbox` then verifies nothing).
    """
    if not secret:
        return hashlib.sha256(f"{issue_id}\0{_key(address)}".encode()).hexdigest()[:32]
    return _mac(secret, MESSAGE_ID, issue_id, _key(address)).hex()[:32]


def message_digest_is_valid(secret: str, issue_id: str, address: str, digest: str) -> bool:
    """Whether `digest` is the keyed digest of this issue's message to `address`."""
    return _same(message_digest(secret, issue_id, address), digest)


def return_path_token(secret: str, issue_id: str, address: str) -> str:
    """The VERP tag for this issue's message to `address` (lower-case base32)."""
    mac = _mac(secret, RETURN_PATH, issue_id, _key(address))
    return base64.b32encode(mac).decode().lower()[:RETURN_PATH_TOKEN_LENGTH]


def return_path_token_is_valid(secret: str, issue_id: str, address: str, token: str) -> bool:
    return _same(return_path_token(secret, issue_id, address), token)


def tagged_return_path(bounce_address: str, token: str) -> str:
    """`bounces@example.org` with its tag: `bounces+TOKEN@example.org` (plus addressing)."""
    local, _, domain = bounce_address.strip().rpartition("@")
    return f"{local}+{token}@{domain}"


def return_path_tokens(text: str) -> list[str]:
    """Every VERP tag in `text` (an address header of a bounce), lower-cased."""
    return [m.group(1).lower() for m in RETURN_PATH_TOKEN.finditer(text)]


def mailto_references(text: str) -> list[str]:
    """Every `ref TOKEN` in the subject or body of a mailed unsubscribe, lower-cased."""
    return [m.group(1).lower() for m in MAILTO_REFERENCE.finditer(text)]
