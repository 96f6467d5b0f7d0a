"""The Microsoft Entra app registration the Microsoft 365 routes sign in as (environment only).

Read for SMTP with `smtp.auth: oauth2` and for Graph; nothing of it is
written in newsletter.yaml. `NEWSLETTER_OAUTH_AUTHORITY` points at another
cloud's identity platform (or a local test server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.core.fields import Field
from newsletter.core.setting_parts import (
    BlockContext,
    Secret,
    SettingsBlock,
    https,
    optional_path,
    optional_text,
    secret,
)

if TYPE_CHECKING:
    from newsletter.core.settings import Settings

TENANT_ENV = "NEWSLETTER_OAUTH_TENANT_ID"
CLIENT_ID_ENV = "NEWSLETTER_OAUTH_CLIENT_ID"
CLIENT_SECRET_ENV = "NEWSLETTER_OAUTH_CLIENT_SECRET"
CERTIFICATE_ENV = "NEWSLETTER_OAUTH_CERTIFICATE_PATH"
CERTIFICATE_PASSWORD_ENV = "NEWSLETTER_OAUTH_CERTIFICATE_PASSWORD"
AUTHORITY_ENV = "NEWSLETTER_OAUTH_AUTHORITY"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
# Names the app registration, for descriptions of the route; secrets are named, never shown.
APP_REGISTRATION = f"the app registration in {TENANT_ENV} and {CLIENT_ID_ENV}"


@dataclass(frozen=True)
class OAuthSettings:
    """The Microsoft Entra app registration the Microsoft 365 routes sign in as (environment only)."""

    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    certificate_path: Path | None = None
    certificate_password: Secret | None = None
    authority: str = DEFAULT_AUTHORITY

    def missing(self) -> list[str]:
        """The environment variables still to set before a token can be asked for."""
        missing = [
            name
            for name, value in ((TENANT_ENV, self.tenant_id), (CLIENT_ID_ENV, self.client_id))
            if not value
        ]
        if not self.client_secret and self.certificate_path is None:
            missing.append(f"{CLIENT_SECRET_ENV} (or {CERTIFICATE_ENV})")
        return missing

    @classmethod
    def of(cls, settings: Settings) -> OAuthSettings:
        """This block of the project's settings."""
        return settings.block("oauth", cls)


def _build(values: Mapping[str, Any], context: BlockContext) -> OAuthSettings:
    return OAuthSettings(**values)


# The app registration is not written down anywhere but the environment.
OAUTH_BLOCK = SettingsBlock(
    "oauth",
    (
        Field("oauth.tenant_id", optional_text, default=None, env=TENANT_ENV, in_file=False),
        Field("oauth.client_id", optional_text, default=None, env=CLIENT_ID_ENV, in_file=False),
        Field("oauth.client_secret", secret, default=None, env=CLIENT_SECRET_ENV, in_file=False),
        # Where the certificate is kept is not itself a secret: it may be written down.
        Field("oauth.certificate_path", optional_path, default=None, env=CERTIFICATE_ENV),
        Field(
            "oauth.certificate_password",
            secret,
            default=None,
            env=CERTIFICATE_PASSWORD_ENV,
            in_file=False,
        ),
        Field(
            "oauth.authority", https, default=DEFAULT_AUTHORITY, env=AUTHORITY_ENV, in_file=False
        ),
    ),
    _build,
)
