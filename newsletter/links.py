"""The addresses an email points at: web version, unsubscribe, share-your-ideas.

One place builds them so the email, the text part, the message headers and
the archive site always agree.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

from newsletter.content import Issue, Section
from newsletter.settings import Secret, Settings


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


def unsubscribe_token(address: str, secret: Secret | None) -> str | None:
    """An HMAC of the address, so an unsubscribe link can't be forged; None without a secret.

    The secret is `Settings.unsubscribe_secret` (NEWSLETTER_UNSUBSCRIBE_SECRET).
    """
    if not secret:
        return None
    digest = hmac.new(secret.reveal().encode(), address.strip().lower().encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def unsubscribe_https_url(settings: Settings, issue: Issue, address: str) -> str | None:
    """The one-click unsubscribe address for this person, when an https URL is configured."""
    if not settings.unsubscribe_url:
        return None
    params = {"address": address, "issue": issue.id}
    token = unsubscribe_token(address, settings.unsubscribe_secret)
    if token:
        params["token"] = token
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
