"""The `inbox.imap` settings, read from newsletter.yaml with positions, secrets from the environment.

    inbox:
      imap:
        host: imap.example.org       # or NEWSLETTER_IMAP_HOST
        port: 993                    # IMAP over TLS; certificates are always verified
        folder: INBOX                # where bounces and replies arrive
        processed_folder: Processed  # where processed messages are moved

The username and password come only from `NEWSLETTER_IMAP_USERNAME` and
`NEWSLETTER_IMAP_PASSWORD`. This small loader stands beside `settings.py`
until the `inbox` block is folded into the one `Settings` object;
`open_inbox_project` opens the project while `settings.py` does not yet know
that block.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.checks import unknown_fields
from newsletter.errors import ConfigError, ContentError, Problem
from newsletter.project import Project
from newsletter.settings import Secret, read_settings
from newsletter.yamlfile import YamlDocument, load_yaml

IMAP_FIELDS = ("host", "port", "folder", "processed_folder")
HOST_ENV = "NEWSLETTER_IMAP_HOST"
USERNAME_ENV = "NEWSLETTER_IMAP_USERNAME"
PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"
_SECRET_WORDS = ("password", "secret", "token", "username")


@dataclass(frozen=True)
class ImapSettings:
    """Where the bounce mailbox is and how to log in to it."""

    host: str
    port: int = 993
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    username: str | None = None
    password: Secret | None = None


def read_imap_settings(
    root_dir: Path, environ: Mapping[str, str] | None = None
) -> tuple[ImapSettings | None, list[Problem]]:
    """The IMAP settings (None when no host is set anywhere), with every problem found."""
    env = os.environ if environ is None else environ
    path = Path(root_dir) / "newsletter.yaml"
    doc = load_yaml(path)
    if doc.data is None:
        return None, list(doc.problems)
    problems: list[Problem] = []
    block = _imap_block(doc, problems)
    host = env.get(HOST_ENV) or block.get("host")
    if host is not None and not isinstance(host, str):
        problems.append(doc.problem(("inbox", "imap", "host"), "`inbox.imap.host` must be text"))
        host = None
    port = block.get("port", 993)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        problems.append(
            doc.problem(("inbox", "imap", "port"), "`inbox.imap.port` must be a port number")
        )
        port = 993
    folders = {}
    for name, default in (("folder", "INBOX"), ("processed_folder", "Processed")):
        value = block.get(name, default)
        if not isinstance(value, str) or not value.strip() or not value.isascii():
            problems.append(
                doc.problem(
                    ("inbox", "imap", name),
                    f"`inbox.imap.{name}` must be a folder name in plain ASCII letters",
                )
            )
            value = default
        folders[name] = value.strip()
    if folders["folder"] == folders["processed_folder"]:
        problems.append(
            doc.problem(
                ("inbox", "imap", "processed_folder"),
                "`inbox.imap.processed_folder` must differ from `inbox.imap.folder`",
            )
        )
    if not host:
        return None, problems
    password = env.get(PASSWORD_ENV)
    return (
        ImapSettings(
            host=host.strip(),
            port=port,
            folder=folders["folder"],
            processed_folder=folders["processed_folder"],
            username=env.get(USERNAME_ENV) or None,
            password=Secret(password) if password else None,
        ),
        problems,
    )


def load_imap_settings(root_dir: Path, environ: Mapping[str, str] | None = None) -> ImapSettings:
    """The IMAP settings, or a clear error saying what to set."""
    settings, problems = read_imap_settings(root_dir, environ)
    if any(p.is_error for p in problems):
        raise ContentError(problems)
    if settings is None:
        raise ConfigError(
            f"no IMAP server is set up: set `inbox.imap.host` in newsletter.yaml or {HOST_ENV}, "
            "or read a saved mailbox with --maildir DIR or --mbox FILE"
        )
    if settings.username is None or settings.password is None:
        raise ConfigError(
            f"the IMAP login needs {USERNAME_ENV} and {PASSWORD_ENV} in the environment"
        )
    return settings


def _imap_block(doc: YamlDocument, problems: list[Problem]) -> dict[str, Any]:
    data = doc.data if isinstance(doc.data, dict) else {}
    inbox = data.get("inbox")
    if inbox is None:
        return {}
    if not isinstance(inbox, dict):
        problems.append(doc.problem(("inbox",), "`inbox` must be a block of settings"))
        return {}
    problems += unknown_fields(doc, ("inbox",), inbox, ("imap",), "the `inbox` settings")
    imap = inbox.get("imap")
    if imap is None:
        return {}
    if not isinstance(imap, dict):
        problems.append(doc.problem(("inbox", "imap"), "`inbox.imap` must be a block of settings"))
        return {}
    secrets = [k for k in imap if any(word in str(k).lower() for word in _SECRET_WORDS)]
    for key in secrets:
        problems.append(
            doc.problem(
                ("inbox", "imap", str(key)),
                f"`inbox.imap.{key}` does not belong in newsletter.yaml; set {USERNAME_ENV} and "
                f"{PASSWORD_ENV} in the environment instead",
                at_key=True,
            )
        )
    ordinary = {k: v for k, v in imap.items() if k not in secrets}
    problems += unknown_fields(doc, ("inbox", "imap"), ordinary, IMAP_FIELDS, "`inbox.imap`")
    return imap


def open_inbox_project(root_dir: Path, environ: Mapping[str, str] | None = None) -> Project:
    """Open the project, accepting the `inbox` block that `settings.py` does not know yet.

    Only the problem placed on the `inbox` key itself is set aside; every
    other settings problem is reported as usual. Once `settings.py` accepts
    `inbox`, this is the same as `open_project`.
    """
    root_dir = Path(root_dir).resolve()
    if not (root_dir / "newsletter.yaml").exists():
        raise ConfigError(
            f"{root_dir} is not a newsletter project (no newsletter.yaml); "
            "run `newsletter init DIR` to create one, or pass --root"
        )
    settings, problems = read_settings(root_dir, environ)
    doc = load_yaml(root_dir / "newsletter.yaml")
    inbox_key = (
        doc.key_where("inbox") if isinstance(doc.data, dict) and "inbox" in doc.data else None
    )
    kept = [
        p
        for p in problems
        if not (
            inbox_key is not None and (p.line, p.column) == inbox_key and "`inbox`" in p.message
        )
    ]
    if settings is None or any(p.is_error for p in kept):
        raise ContentError(kept)
    return Project(root_dir, settings)
