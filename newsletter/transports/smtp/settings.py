"""The SMTP relay's settings: the `smtp` block of newsletter.yaml and the variables that set it.

The username and password come only from the environment. `smtp.auth`
says how to log in: `password` (the username and password, when set),
`oauth2` (XOAUTH2 with a Microsoft app-only token, see
`transports.microsoft`) or `none` (never, for a relay that knows this server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.core.fields import Field, seconds, text, whole_number
from newsletter.core.setting_parts import (
    BlockContext,
    Secret,
    SettingsBlock,
    one_of,
    port_text,
    secret,
)

if TYPE_CHECKING:
    from newsletter.core.settings import Settings

HOST_ENV = "NEWSLETTER_SMTP_HOST"
PORT_ENV = "NEWSLETTER_SMTP_PORT"
SECURITY_ENV = "NEWSLETTER_SMTP_SECURITY"
USERNAME_ENV = "NEWSLETTER_SMTP_USERNAME"
PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
SMTP_SECURITY = ("starttls", "ssl", "none")
SMTP_AUTH = ("password", "oauth2", "none")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: Secret | None = None
    connections: int = 1
    timeout_seconds: float = 30.0
    # password: log in with the username and password, if set; oauth2: XOAUTH2 with a
    # Microsoft app-only token (the `oauth` block); none: never log in.
    auth: str = "password"

    @classmethod
    def of(cls, settings: Settings) -> SmtpSettings:
        """This block of the project's settings."""
        return settings.block("smtp", cls)


def _build(values: Mapping[str, Any], context: BlockContext) -> SmtpSettings:
    return SmtpSettings(**values)


SMTP_BLOCK = SettingsBlock(
    "smtp",
    (
        Field("smtp.host", text, default="localhost", env=HOST_ENV),
        Field(
            "smtp.security",
            text,
            default="starttls",
            check=one_of(SMTP_SECURITY, "an SMTP security mode", "use starttls, ssl or none"),
            env=SECURITY_ENV,
        ),
        Field(
            "smtp.port",
            whole_number(zero_means=587),
            default_from=lambda read: 465 if read["security"] == "ssl" else 587,
            env=PORT_ENV,
            env_parse=port_text,
        ),
        Field("smtp.username", text, default=None, env=USERNAME_ENV, in_file=False),
        Field("smtp.password", secret, default=None, env=PASSWORD_ENV, in_file=False),
        Field("smtp.connections", whole_number(zero_means=1), default=1),
        Field("smtp.timeout_seconds", seconds(zero_means=30.0), default=30.0),
        Field(
            "smtp.auth",
            text,
            default="password",
            check=one_of(SMTP_AUTH, "an SMTP login method", "use password, oauth2 or none"),
        ),
    ),
    _build,
)
