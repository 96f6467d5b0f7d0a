"""The settings an HTTP email API (Postmark, Mailjet) is declared with: where it is, its keys.

Each provider is written under `providers.<name>` in newsletter.yaml: its
address (`base_url`, or an environment variable for a test server) and any
option its API takes (e.g. `message_stream`); its keys come only from the
environment. The provider's own `settings` module names the variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from newsletter.core.fields import Field, text
from newsletter.core.setting_parts import BlockContext, Secret, SettingsBlock, secret

if TYPE_CHECKING:
    from newsletter.core.settings import Settings


@dataclass(frozen=True)
class ProviderSettings:
    """An HTTP email API provider: where it is and the key to use (from the environment)."""

    name: str
    base_url: str
    api_key: Secret | None = None
    api_secret: Secret | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, name: str) -> ProviderSettings:
        """The block of provider `name` (`providers.<name>` in newsletter.yaml)."""
        return settings.block(name, cls)


def provider_block(
    name: str, default_url: str, *, url_env: str, key_env: str, secret_env: str | None = None
) -> SettingsBlock:
    """The `providers.<name>` block: address, key (and secret key), free options."""
    where = f"providers.{name}"

    def build(values: Mapping[str, Any], context: BlockContext) -> ProviderSettings:
        return ProviderSettings(
            name=name,
            base_url=values["base_url"].rstrip("/") or default_url,
            api_key=values["api_key"],
            api_secret=values["api_secret"],
            options={k: v for k, v in context.options.items() if k != "base_url"},
        )

    return SettingsBlock(
        name,
        (
            Field(f"{where}.base_url", text, default=default_url, env=url_env),
            Field(f"{where}.api_key", secret, default=None, env=key_env, in_file=False),
            Field(f"{where}.api_secret", secret, default=None, env=secret_env, in_file=False),
        ),
        build,
        free_options=where,
    )
