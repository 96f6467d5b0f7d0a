"""Postmark's settings: `providers.postmark` in newsletter.yaml, its token from the environment."""

from __future__ import annotations

from newsletter.transports.provider_settings import provider_block

TOKEN_ENV = "NEWSLETTER_POSTMARK_TOKEN"
URL_ENV = "NEWSLETTER_POSTMARK_URL"
DEFAULT_URL = "https://api.postmarkapp.com"

POSTMARK_BLOCK = provider_block("postmark", DEFAULT_URL, url_env=URL_ENV, key_env=TOKEN_ENV)
