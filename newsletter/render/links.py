"""The addresses an email points at: web version, unsubscribe, share-your-ideas.

One place builds them so the email, the text part, the message headers and
the archive site always agree.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

from newsletter.content.issue import Issue, Section
from newsletter.core.settings import Secret, Settings


def issue_page_path(issue_id: str) -> str:
    """Where an issue's web version lives inside the archive site."""
    return f"issues/{issue_id}/"


def web_version_url(settings: Settings, issue: Issue) -> str:
    """The "View in browser" address: the issue's page on the archive site."""
    return settings.archive_base_url + issue_page_path(issue.id)


def mailto(address: str, subject: str, body: str | None = None) -> str:
    """A mailto: link with its subject (and body) percent-encoded per RFC 6068."""
    query = f"subject={quote(subject, safe='')}"
    if body:
        query += f"&body={quote(body, safe='')}"
    return f"mailto:{quote(address, safe='@')}?{query}"


def share_ideas_subject(issue: Issue, section: Section) -> str:
    return f"Ideas: {issue.title} ({issue.date:%B %Y}) - {section.title}"


def share_ideas_mailto(issue: Issue, section: Section) -> str:
    """The "Share your ideas" reply route for a section, sortable by its subject."""
    return mailto(issue.reply_to, share_ideas_subject(issue, section))


# What a token is for: the same address and list give a different token for
# each purpose, so an unsubscribe link can never be replayed as a resubscribe.
UNSUBSCRIBE = "unsubscribe"
RESUBSCRIBE = "resubscribe"


def address_token(secret: str, purpose: str, list_id: str, address: str) -> str:
    """An HMAC-SHA256 over (purpose, list, address), so links can't be forged or moved.

    The address is compared case-insensitively, as everywhere else; 128 bits
    of the MAC are kept to keep links short.
    """
    message = "\0".join((purpose, list_id, address.strip().lower())).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def address_token_is_valid(
    secret: str, purpose: str, list_id: str, address: str, token: str
) -> bool:
    """Whether `token` is the one `address_token` gives (compared in constant time)."""
    expected = address_token(secret, purpose, list_id, address)
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))


def unsubscribe_token(address: str, list_id: str, secret: Secret | None) -> str | None:
    """The unsubscribe token, or None without a secret (`Settings.unsubscribe_secret`)."""
    if not secret:
        return None
    return address_token(secret.reveal(), UNSUBSCRIBE, list_id, address)


def unsubscribe_https_url(settings: Settings, issue: Issue, address: str) -> str | None:
    """The one-click unsubscribe address for this person, when `newsletter serve` can honour it.

    None without an https URL, and None without a secret: `serve` refuses an
    unsigned link, so a message must never promise one (it keeps the mailto:).
    """
    if not settings.unsubscribe_url:
        return None
    token = unsubscribe_token(address, settings.list_id, settings.unsubscribe_secret)
    if not token:
        return None
    params = {"address": address, "issue": issue.id, "token": token}
    separator = "&" if "?" in settings.unsubscribe_url else "?"
    return settings.unsubscribe_url + separator + urlencode(params, quote_via=quote)


def unsubscribe_mailto(settings: Settings, issue: Issue, address: str) -> str:
    """The mailto: unsubscribe route, naming the address so the team can act on it."""
    return mailto(
        settings.unsubscribe_mailto,
        f"Unsubscribe {address} from {settings.organisation} News Update",
    )


def unsubscribe_link(settings: Settings, issue: Issue, address: str) -> str:
    """The link shown in the email's footer: https when configured, otherwise mailto."""
    return unsubscribe_https_url(settings, issue, address) or unsubscribe_mailto(
        settings, issue, address
    )
