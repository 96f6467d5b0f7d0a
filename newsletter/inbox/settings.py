"""What `newsletter inbox` needs from the settings to read a mailbox over IMAP.

The `inbox.imap` block is declared with the project's other settings in
`core/settings.py`:

    inbox:
      imap:
        host: imap.example.org       # or NEWSLETTER_IMAP_HOST
        port: 993                    # IMAP over TLS; certificates are always verified
        folder: INBOX                # where bounces and replies arrive
        processed_folder: Processed  # where processed messages are moved

The username and password come only from the environment. This module says,
in one clear line, what is missing when the inbox cannot be read that way.
"""

from __future__ import annotations

from newsletter.core.errors import ConfigError
from newsletter.core.settings import (
    IMAP_HOST_ENV,
    IMAP_PASSWORD_ENV,
    IMAP_USERNAME_ENV,
    ImapSettings,
    Settings,
)

__all__ = ["HOST_ENV", "PASSWORD_ENV", "USERNAME_ENV", "ImapSettings", "imap_settings"]

# The variables are declared with the `inbox.imap` settings; these are their names here.
HOST_ENV = IMAP_HOST_ENV
USERNAME_ENV = IMAP_USERNAME_ENV
PASSWORD_ENV = IMAP_PASSWORD_ENV


def imap_settings(settings: Settings) -> ImapSettings:
    """The IMAP settings, or ConfigError saying what to set."""
    imap = settings.imap
    if imap is None:
        raise ConfigError(
            f"no IMAP server is set up: set `inbox.imap.host` in newsletter.yaml or {HOST_ENV}, "
            "or read a saved mailbox with --maildir DIR or --mbox FILE"
        )
    if imap.username is None or imap.password is None:
        raise ConfigError(
            f"the IMAP login needs {USERNAME_ENV} and {PASSWORD_ENV} in the environment"
        )
    return imap
