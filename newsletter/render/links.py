"""The addresses an email points at: web version, unsubscribe, share-your-ideas.

One place builds them so the email, the text part, the message headers and
the archive site always agree.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from newsletter.content.issue import Issue, Section
from newsletter.core.settings import Secret, Settings
from newsletter.core.signing import RESUBSCRIBE as RESUBSCRIBE  # re-exported for callers
from newsletter.core.signing import UNSUBSCRIBE, address_token
from newsletter.core.signing import address_token_is_valid as address_token_is_valid


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
    """The mailto: unsubscribe route, naming the address so the team can act on it.

    With a secret, the subject carries the signed reference `ref TOKEN` (the
    one-click token): `inbox` acts only on a request that carries it, so
    nobody can take someone else off the list by mailing their address.
    """
    subject = f"Unsubscribe {address} from {settings.organisation} News Update"
    token = unsubscribe_token(address, settings.list_id, settings.unsubscribe_secret)
    if token:
        subject += f" (ref {token})"
    return mailto(settings.unsubscribe_mailto, subject)


def unsubscribe_link(settings: Settings, issue: Issue, address: str) -> str:
    """The link shown in the email's footer: https when configured, otherwise mailto."""
    return unsubscribe_https_url(settings, issue, address) or unsubscribe_mailto(
        settings, issue, address
    )
