"""The one exception hierarchy. Messages are written for a comms officer.

The CLI catches `NewsletterError` in one place and prints its message; every
subclass names the file, line, field or recipient it concerns. Every error
that can reach a person is defined here; the few exceptions defined elsewhere
are signals private to one module (an SMTP reply, a back-off) that are turned
into one of these before they leave it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from newsletter.review.approval import ApprovalStatus


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a file, located for editors and CI."""

    path: Path
    line: int
    column: int
    message: str
    severity: str = "error"  # "error" or "warning"
    # What sort of problem this is, as a plural phrase ("publications without a URL"),
    # for problems that can repeat many times, so a long run of them can be summarised.
    kind: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}:{self.column}: {prefix}{self.message}"


class NewsletterError(Exception):
    """Base of every error the newsletter reports to its user."""


class ContentError(NewsletterError):
    """The content (issue, catalogue, settings, recipients) has one or more errors."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        errors = [p for p in self.problems if p.is_error]
        lines = [str(p) for p in errors] or ["the content has errors"]
        super().__init__("\n".join(lines))


class ConfigError(NewsletterError):
    """A setting or environment variable is missing or wrong."""


class HeaderInjectionError(NewsletterError):
    """A value meant for an email header contains a line break."""


class DeliveryError(NewsletterError):
    """A transport could not hand a message over."""


class LockHeldError(NewsletterError):
    """Another dispatch holds the process lock."""


class BriefingError(NewsletterError):
    """A briefing paper cannot be imported (not the format its name says, unsafe, empty, no sections)."""


class SuppressedFileError(ContentError):
    """suppressed.csv has a row (or header) the writers will not rewrite without a person."""


class UnreadableMessage(NewsletterError):
    """A returned message `inbox` will not read (too big, nested too deep, or broken)."""


class Interrupted(NewsletterError):
    """A run stopped cleanly on a signal; the message says what was done and how to go on."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class RenderingChanged(NewsletterError):
    """The run rendered an email other than the one approved, though the files look the same."""


class NotApproved(NewsletterError):
    """An issue is not approved, or has changed since it was approved."""

    def __init__(self, status: ApprovalStatus, zone: ZoneInfo) -> None:
        self.status = status
        super().__init__(status.refusal(zone))


class TokenRefused(DeliveryError):
    """The identity platform refused us for a reason no retry can fix (secret, tenant, scope)."""


class TokenUnavailable(NewsletterError):
    """The identity platform could not be reached or was busy: try again later.

    `check` is what to look at if it keeps happening (never the relay's settings:
    the relay was not the problem).
    """

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check


class WebhookPayloadError(NewsletterError):
    """A webhook body is not the JSON shape its provider documents."""


class LedgerError(NewsletterError):
    """The ledger file cannot be used: locked, damaged, read-only, full, replaced or too new."""
