"""Microsoft Graph sendMail's settings: the `graph` block of newsletter.yaml.

The mailbox sent as is `graph.sender`, else the From address; the token
comes from the app registration (`transports.microsoft.settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.core.fields import Field, whole_number
from newsletter.core.setting_parts import (
    BlockContext,
    SettingsBlock,
    address_problem,
    https,
    optional_text,
)

if TYPE_CHECKING:
    from newsletter.core.settings import Settings

URL_ENV = "NEWSLETTER_GRAPH_URL"
DEFAULT_URL = "https://graph.microsoft.com"
# Graph allows four requests at a time per mailbox.
MAX_CONNECTIONS = 4


@dataclass(frozen=True)
class GraphSettings:
    """Microsoft Graph sendMail: the mailbox sent as, and where Graph is."""

    sender: str = ""
    base_url: str = DEFAULT_URL
    connections: int = 1

    @classmethod
    def of(cls, settings: Settings) -> GraphSettings:
        """This block of the project's settings."""
        return settings.block("graph", cls)


def _build(values: Mapping[str, Any], context: BlockContext) -> GraphSettings:
    # The mailbox Graph sends as is the From address unless said otherwise.
    return GraphSettings(**{**values, "sender": values["sender"] or context.from_address})


def _connections_problem(connections: int) -> str | None:
    if connections <= MAX_CONNECTIONS:
        return None
    return (
        f"Graph allows {MAX_CONNECTIONS} requests at a time per mailbox; "
        f"`graph.connections` must be {MAX_CONNECTIONS} or fewer"
    )


GRAPH_BLOCK = SettingsBlock(
    "graph",
    (
        Field("graph.sender", optional_text, default=None, check=address_problem),
        Field("graph.base_url", https, default=DEFAULT_URL, env=URL_ENV),
        Field(
            "graph.connections",
            whole_number(zero_means=1),
            default=1,
            check=_connections_problem,
        ),
    ),
    _build,
)
