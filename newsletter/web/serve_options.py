"""What `newsletter serve` needs beyond the project: the link secret and webhook credentials."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from newsletter.core.errors import ConfigError
from newsletter.core.settings import Secret, Settings
from newsletter.inbox.webhooks import PROVIDERS


def webhook_env(provider: str, part: str) -> str:
    """`NEWSLETTER_POSTMARK_WEBHOOK_USERNAME` and the like."""
    return f"NEWSLETTER_{provider.upper()}_WEBHOOK_{part}"


@dataclass(frozen=True)
class BasicCredentials:
    """The user name and password a provider puts in the webhook URL (basic auth)."""

    username: str
    password: Secret

    def accept(self, username: str | None, password: str | None) -> bool:
        """Both match, compared in constant time (both are always compared)."""
        user_ok = secrets.compare_digest((username or "").encode(), self.username.encode())
        pass_ok = secrets.compare_digest((password or "").encode(), self.password.reveal().encode())
        return user_ok and pass_ok


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ServeOptions:
    """What `serve` needs beyond the project: the link secret and webhook credentials."""

    secret: Secret | None
    webhooks: Mapping[str, BasicCredentials] = field(default_factory=dict)
    clock: Callable[[], datetime] = _utc_now


def serve_options_from_environment(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> ServeOptions:
    """The link secret (from Settings) and each provider's webhook credentials (from env)."""
    env = os.environ if environ is None else environ
    webhooks: dict[str, BasicCredentials] = {}
    for provider in PROVIDERS:
        user_var, password_var = (
            webhook_env(provider, "USERNAME"),
            webhook_env(provider, "PASSWORD"),
        )
        username, password = env.get(user_var, "").strip(), env.get(password_var, "")
        if bool(username) != bool(password):
            missing = password_var if username else user_var
            raise ConfigError(
                f"{missing} is not set: the {provider} webhook needs both "
                f"{user_var} and {password_var} (or neither, to turn it off)"
            )
        if username:
            webhooks[provider] = BasicCredentials(username, Secret(password))
    return ServeOptions(secret=settings.unsubscribe_secret, webhooks=webhooks)
