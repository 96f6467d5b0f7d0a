"""The transports' registry: each one's name and the settings it declares.

The `transport` setting (and `--transport`) chooses one of
`TRANSPORT_NAMES`. Each transport declares its own part of newsletter.yaml
and the environment variables that set it (`<name>/settings.py`, a
`SettingsBlock`), and `core.settings` reads every block listed in
`SETTINGS_BLOCKS`: a new transport is a new package here and a line in each
list, never an edit of the settings.

This module imports only those declarations, so the settings can read it
without loading any transport (or requests, smtplib, msal). Opening a
transport, its route and its checks are in `transports.lookup`.
"""

from __future__ import annotations

from newsletter.core.setting_parts import SettingsBlock
from newsletter.transports.graph.settings import GRAPH_BLOCK
from newsletter.transports.mailjet.settings import MAILJET_BLOCK
from newsletter.transports.microsoft.settings import OAUTH_BLOCK
from newsletter.transports.notify.settings import NOTIFY_BLOCK
from newsletter.transports.postmark.settings import POSTMARK_BLOCK
from newsletter.transports.smtp.settings import SMTP_BLOCK

__all__ = ["SETTINGS_BLOCKS", "TRANSPORT_NAMES"]

# The one list of transport names: the `transport` setting and `--transport` read it,
# and `transports.lookup.TRANSPORTS` opens each.
TRANSPORT_NAMES: tuple[str, ...] = ("outbox", "smtp", "postmark", "mailjet", "graph", "notify")

# Every transport's settings (the outbox has none of its own: `outbox_dir` is the project's).
SETTINGS_BLOCKS: tuple[SettingsBlock, ...] = (
    SMTP_BLOCK,
    OAUTH_BLOCK,
    GRAPH_BLOCK,
    NOTIFY_BLOCK,
    POSTMARK_BLOCK,
    MAILJET_BLOCK,
)
