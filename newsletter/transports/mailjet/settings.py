"""Mailjet's settings: `providers.mailjet` in newsletter.yaml, its key pair from the environment."""

from __future__ import annotations

from newsletter.transports.provider_settings import provider_block

KEY_ENV = "NEWSLETTER_MAILJET_API_KEY"
SECRET_ENV = "NEWSLETTER_MAILJET_SECRET_KEY"
URL_ENV = "NEWSLETTER_MAILJET_URL"
DEFAULT_URL = "https://api.mailjet.com"

MAILJET_BLOCK = provider_block(
    "mailjet", DEFAULT_URL, url_env=URL_ENV, key_env=KEY_ENV, secret_env=SECRET_ENV
)
