"""The one setting problem that stops every real send: an unsubscribe link nobody can sign.

`validate` reports it, the send gate (`delivery/gate`) refuses on it, and
`schedule` shows it on the issues dispatch would refuse, so none of them
says an issue will go when it will not. It is checked in the environment
the command runs in: the secret lives where send, dispatch and serve run.
"""

from __future__ import annotations

from newsletter.core.errors import Problem
from newsletter.core.settings import UNSUBSCRIBE_SECRET_ENV, Settings
from newsletter.core.yamlfile import load_yaml


def unsubscribe_secret_problems(settings: Settings) -> list[Problem]:
    """An https unsubscribe URL needs the secret that signs its links (and that `serve` checks)."""
    if not settings.unsubscribe_url or settings.unsubscribe_secret:
        return []
    doc = load_yaml(settings.settings_path)
    message = (
        f"`unsubscribe.url` is set but {UNSUBSCRIBE_SECRET_ENV} is not: set it to a long "
        "random value wherever send, dispatch and serve run, or remove the url "
        "(messages then offer only the mailto:)"
    )
    return [doc.problem(("unsubscribe", "url"), message)]
