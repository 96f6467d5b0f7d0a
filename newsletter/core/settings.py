"""The team's settings (`newsletter.yaml`), with environment overrides.

Settings are loaded once into one frozen `Settings` object. Secrets (SMTP
password, API keys, the Microsoft app registration's secret, DKIM key, the
unsubscribe secret, the IMAP login) come only from the environment, and are
held in `Secret` so that printing or logging a settings object never shows
them. This is the only module that reads the environment: everything else
is handed what it needs through `Settings`.

Each setting is declared once as a `fields.Field`: where it is written, how
it is read and checked, its default, and the variable that overrides it.
The project's own settings are declared below; each transport declares its
own block (`newsletter.transports.SETTINGS_BLOCKS`, e.g. `smtp`, `oauth`,
`providers.postmark`), read here like the rest and kept in `Settings.blocks`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.core.checks import link_problem
from newsletter.core.envfile import UNSUBSCRIBE_SECRET_ENV as UNSUBSCRIBE_SECRET_ENV
from newsletter.core.errors import ConfigError, ContentError, Problem
from newsletter.core.fields import (
    REQUIRED,
    Field,
    FieldReader,
    Invalid,
    cap,
    number,
    seconds,
    text,
    whole_number,
)
from newsletter.core.paths import ProjectPaths
from newsletter.core.setting_parts import (
    BlockContext,
    Secret,
    SettingsBlock,
    address_problem,
    check_blocks,
    one_of,
    optional_text,
    secret,
    secret_refusal,
)
from newsletter.core.yamlfile import load_yaml
from newsletter.transports import SETTINGS_BLOCKS, TRANSPORT_NAMES

# Secret is defined with the other parts settings are declared with, and re-exported here.
__all__ = ["Secret", "Settings", "load_settings", "read_settings"]

DEFAULT_TIMEZONE = "Europe/London"
TRANSPORT_ENV = "NEWSLETTER_TRANSPORT"
LEDGER_PATH_ENV = "NEWSLETTER_LEDGER_PATH"
OUTBOX_DIR_ENV = "NEWSLETTER_OUTBOX_DIR"
IMAP_HOST_ENV = "NEWSLETTER_IMAP_HOST"
IMAP_USERNAME_ENV = "NEWSLETTER_IMAP_USERNAME"
IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"
DKIM_PRIVATE_KEY_ENV = "NEWSLETTER_DKIM_PRIVATE_KEY"
DKIM_PRIVATE_KEY_PATH_ENV = "NEWSLETTER_DKIM_PRIVATE_KEY_PATH"
DKIM_DOMAIN_ENV = "NEWSLETTER_DKIM_DOMAIN"
DKIM_SELECTOR_ENV = "NEWSLETTER_DKIM_SELECTOR"
# Where HTTPS clients find the certificate authorities to trust, in requests' own order.
CA_BUNDLE_ENVS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")

Block = TypeVar("Block")


@dataclass(frozen=True)
class RateSettings:
    """Sending caps; None means no cap at that scale.

    `per_day` counts messages sent in the last 24 hours (a rolling window, as
    Microsoft 365 counts) across every issue in the ledger; a run that reaches
    it stops, and the next run after the window has room carries on.
    """

    per_second: float | None = None
    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None


@dataclass(frozen=True)
class RetrySettings:
    """How often to try: `max_attempts` within one run, `max_total_attempts` in all runs together."""

    max_attempts: int = 5
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0
    hard_bounce_after: int = 1
    max_total_attempts: int = 20


@dataclass(frozen=True)
class DkimSettings:
    domain: str
    selector: str
    private_key: Secret


@dataclass(frozen=True)
class ImapSettings:
    """Where the bounce mailbox is (`inbox.imap`) and how to log in to it (the environment)."""

    host: str
    port: int = 993
    folder: str = "INBOX"  # where bounces and replies arrive
    processed_folder: str = "Processed"  # where processed messages are moved
    username: str | None = None
    password: Secret | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know about the team and its sending set-up.

    `blocks` holds each transport's own settings by name (`smtp`, `oauth`,
    `graph`, `notify`, `postmark`, `mailjet`); a transport reads its block
    with `block`, typed. `settings.smtp` reads it too, untyped, for tests
    and templates.
    """

    root_dir: Path
    settings_path: Path
    organisation: str
    from_name: str
    from_address: str
    reply_to: str
    postal_address: str
    footer: str
    unsubscribe_mailto: str
    unsubscribe_url: str | None
    archive_base_url: str
    list_id: str
    timezone: str
    transport: str
    ledger_path: Path
    outbox_dir: Path
    lock_path: Path
    dispatch_log_path: Path
    catch_up_days: int
    rate: RateSettings
    retry: RetrySettings
    dkim: DkimSettings | None
    blocks: Mapping[str, object] = field(default_factory=dict)
    # Signs unsubscribe links so nobody can unsubscribe someone else.
    unsubscribe_secret: Secret | None = None
    # How many different people must approve an issue before it is sent.
    approvers: int = 1
    # `approved: true` in an issue file counts (with a warning): only while moving over.
    allow_approved_flag: bool = False
    # The team approves from one shared login: approvals count as different people by name.
    shared_account: bool = False
    # The envelope sender (SMTP MAIL FROM, the Return-Path) where bounces go; None: from.address.
    bounce_address: str | None = None
    # The mailbox `newsletter inbox` reads; None when no host is set.
    imap: ImapSettings | None = None
    # What HTTPS clients trust: a CA bundle file from the environment, else the system's.
    https_verify: str | bool = True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def block(self, name: str, kind: type[Block]) -> Block:
        """The transport block `name`, which must be a `kind` (ConfigError, a bug, if not)."""
        value = self.blocks.get(name)
        if not isinstance(value, kind):
            raise ConfigError(
                f"the settings have no `{name}` block of {kind.__name__}; this is a bug, "
                "please report it"
            )
        return value

    def __getattr__(self, name: str) -> Any:
        blocks = self.__dict__.get("blocks") or {}
        if name.startswith("_") or name not in blocks:
            raise AttributeError(name)
        return blocks[name]


# --- how each kind of setting is read and checked ----------------------------


def _time_zone(value: object, name: str) -> str:
    zone = text(value, name)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"`{zone}` is not a known time zone, e.g. Europe/London") from None
    return zone


def _in_project(root_dir: Path, value: object, name: str) -> Path:
    """A path as written, relative to the project directory unless absolute (`~` allowed)."""
    return root_dir / Path(text(value, name)).expanduser()


def _mailto_address(value: object, name: str) -> str:
    return text(value, name).removeprefix("mailto:")


def _link(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise Invalid(link_problem(value) or f"`{name}` must be a link")
    return value


def _base_url(value: object, name: str) -> str:
    """The archive site's address, ending in `/` so page paths can be added to it."""
    url = text(value, name)
    if url and (why := link_problem(url)):
        raise Invalid(why)
    return url if not url or url.endswith("/") else url + "/"


def _at_least_one(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid(
            f"`{name}` must be a whole number of 1 or more "
            "(how many different people approve an issue)"
        )
    return value


def _yes_no(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"`{name}` must be true or false")
    return value


def https_ca_bundle(environ: Mapping[str, str] | None = None) -> str | bool:
    """The CA bundle HTTPS clients trust: requests' own variables in its order, then SSL_CERT_FILE.

    requests reads REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE itself (and they win
    over a session's setting) but ignores SSL_CERT_FILE, which the SMTP
    transport (OpenSSL) honours; falling back to it keeps one way to trust an
    organisation's certificate authority for every route. True: the system's.
    """
    env = os.environ if environ is None else environ
    return next((env[name] for name in CA_BUNDLE_ENVS if env.get(name)), True)


def _port(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise Invalid(f"`{name}` must be a port number (1 to 65535)")
    return value


def _folder(value: object, name: str) -> str:
    folder = text(value, name).strip()
    if not folder or not folder.isascii():
        raise Invalid(f"`{name}` must be a folder name in plain ASCII letters")
    return folder


def _https_problem(url: str) -> str | None:
    if why := link_problem(url):
        return why
    return "`unsubscribe.url` must be an https: address" if url.startswith("mailto:") else None


# --- the settings, as written in newsletter.yaml -----------------------------


def _settings_fields(paths: ProjectPaths) -> tuple[Field, ...]:
    """The fields of `Settings` itself (the blocks below fill its rate, retry, dkim and imap)."""
    in_project = partial(_in_project, paths.root_dir)
    return (
        Field("organisation", text),
        Field("from.name", text, attr="from_name"),
        Field("from.address", text, check=address_problem, attr="from_address"),
        Field(
            "reply_to",
            text,
            default_from=lambda read: read["from_address"] or REQUIRED,
            check=address_problem,
        ),
        Field("postal_address", text),
        Field("footer", text, default=""),
        Field(
            "unsubscribe.mailto", _mailto_address, check=address_problem, attr="unsubscribe_mailto"
        ),
        Field("unsubscribe.url", _link, default=None, check=_https_problem, attr="unsubscribe_url"),
        Field(
            "unsubscribe.secret",
            secret,
            default=None,
            env=UNSUBSCRIBE_SECRET_ENV,
            in_file=False,
            attr="unsubscribe_secret",
        ),
        Field("archive_base_url", _base_url),
        Field("list_id", text),
        Field("timezone", _time_zone, default=DEFAULT_TIMEZONE),
        Field(
            "transport",
            text,
            default="outbox",
            check=one_of(
                TRANSPORT_NAMES, "a transport", f"choose one of {', '.join(TRANSPORT_NAMES)}"
            ),
            env=TRANSPORT_ENV,
        ),
        Field("ledger_path", in_project, default=paths.ledger_path, env=LEDGER_PATH_ENV),
        Field("outbox_dir", in_project, default=paths.outbox_dir, env=OUTBOX_DIR_ENV),
        Field("lock_path", in_project, default=paths.lock_path),
        Field("dispatch_log_path", in_project, default=paths.dispatch_log_path),
        Field("dispatch.catch_up_days", whole_number(), default=7, attr="catch_up_days"),
        Field("approval.approvers", _at_least_one, default=1, attr="approvers"),
        Field("approval.allow_approved_flag", _yes_no, default=False, attr="allow_approved_flag"),
        Field("approval.shared_account", _yes_no, default=False, attr="shared_account"),
        Field("bounce_address", optional_text, default=None, check=address_problem),
    )


RATE_FIELDS = (
    Field("rate.per_second", number, default=None),
    Field("rate.per_minute", cap, default=None),
    Field("rate.per_hour", cap, default=None),
    Field("rate.per_day", cap, default=None),
)
RETRY_FIELDS = (
    Field("retry.max_attempts", whole_number(zero_means=1), default=5),
    Field("retry.base_delay_seconds", seconds(), default=2.0),
    Field("retry.max_delay_seconds", seconds(), default=300.0),
    Field("retry.hard_bounce_after", whole_number(zero_means=1), default=1),
    # Every run (send, each dispatch tick, retry) adds up: after this many attempts
    # at one person, no automatic run tries them again (the ledger's `gave-up`).
    Field("retry.max_total_attempts", whole_number(zero_means=1), default=20),
)
IMAP_FIELDS = (
    Field("inbox.imap.host", optional_text, default=None, env=IMAP_HOST_ENV),
    Field("inbox.imap.port", _port, default=993),
    Field("inbox.imap.folder", _folder, default="INBOX"),
    Field("inbox.imap.processed_folder", _folder, default="Processed"),
    Field("inbox.imap.username", text, default=None, env=IMAP_USERNAME_ENV, in_file=False),
    Field("inbox.imap.password", secret, default=None, env=IMAP_PASSWORD_ENV, in_file=False),
)
# DKIM is read only when it is set up; its domain and selector may come from
# the environment when the file leaves them out.
DKIM_KEY_FIELDS = (
    Field("dkim.private_key", secret, default=None, env=DKIM_PRIVATE_KEY_ENV, in_file=False),
    Field("dkim.private_key_path", text, default=None, env=DKIM_PRIVATE_KEY_PATH_ENV),
)
DKIM_KEYS = ("domain", "selector", "private_key_path")


def declared_fields(paths: ProjectPaths) -> tuple[Field, ...]:
    """Every setting: the project's own and each transport's block."""
    own = (*_settings_fields(paths), *RATE_FIELDS, *RETRY_FIELDS, *DKIM_KEY_FIELDS, *IMAP_FIELDS)
    return own + tuple(f for block in SETTINGS_BLOCKS for f in block.fields)


def _check_blocks(reader: FieldReader, fields: tuple[Field, ...]) -> None:
    """Unknown keys, blocks that are not blocks, secrets written down (see `check_blocks`)."""
    free = [b.free_options for b in SETTINGS_BLOCKS if b.free_options]
    check_blocks(reader, fields, {"dkim": DKIM_KEYS}, free)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value not in (None, "") else None


def load_settings(root_dir: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Load `newsletter.yaml` from a project directory; raise ContentError listing every problem."""
    settings, problems = read_settings(root_dir, environ)
    errors = [p for p in problems if p.is_error]
    if errors or settings is None:
        raise ContentError(problems)
    return settings


def read_settings(
    root_dir: Path, environ: Mapping[str, str] | None = None
) -> tuple[Settings | None, list[Problem]]:
    """Load settings, returning them (None if unusable) with every problem found.

    Settings that have problems are still returned, each bad value replaced
    by its default, so `validate` can go on to check the issues with them.
    """
    env = os.environ if environ is None else environ
    paths = ProjectPaths(root_dir.resolve())
    doc = load_yaml(paths.settings_path)
    if doc.problems and doc.data is None:
        return None, list(doc.problems)
    if not isinstance(doc.data, dict):
        return None, [Problem(doc.path, 1, 1, "newsletter.yaml must be a block of settings")]
    fields = _settings_fields(paths)
    reader = FieldReader(doc)
    _check_blocks(reader, declared_fields(paths))
    top = reader.read(fields, env)
    settings = Settings(
        root_dir=paths.root_dir,
        settings_path=paths.settings_path,
        **top,
        rate=RateSettings(**reader.read(RATE_FIELDS, env)),
        retry=RetrySettings(**reader.read(RETRY_FIELDS, env)),
        dkim=_read_dkim(reader, paths.root_dir, env),
        blocks={
            block.name: _read_block(reader, block, env, top["from_address"] or "")
            for block in SETTINGS_BLOCKS
        },
        imap=_read_imap(reader, env),
        https_verify=https_ca_bundle(env),
    )
    return settings, reader.problems


def _read_block(
    reader: FieldReader, block: SettingsBlock, env: Mapping[str, str], from_address: str
) -> object:
    """One transport's block, with the free options it may take (secrets refused)."""
    options: dict[str, Any] = {}
    written = reader.value_at(tuple(block.free_options.split("."))) if block.free_options else None
    if block.free_options and written:
        secret_env = next((f.env for f in block.fields if not f.in_file), None)
        options = reader.mapping(
            written,
            tuple(block.free_options.split(".")),
            None,  # any option the provider's API takes
            f"`{block.free_options}`",
            not_a_mapping=f"`{block.free_options}` must be a block",
            refuse=partial(secret_refusal, block.free_options, secret_env),
        )
    values = reader.read(block.fields, env)
    context = BlockContext(from_address, {str(k): str(v) for k, v in options.items()})
    return block.build(values, context)


def _read_dkim(reader: FieldReader, root_dir: Path, env: Mapping[str, str]) -> DkimSettings | None:
    key = reader.read(DKIM_KEY_FIELDS, env)
    private_key: Secret | None = key["private_key"]
    if not isinstance(block := reader.value_at(("dkim",)), dict):
        block = {}
    if not block and not private_key:
        return None
    if private_key is None and key["private_key_path"]:
        try:
            key_text = (root_dir / Path(key["private_key_path"]).expanduser()).read_text(
                encoding="ascii"
            )
        except OSError as error:
            reader.error(
                ("dkim", "private_key_path"), f"the DKIM key file cannot be read ({error.strerror})"
            )
            return None
        private_key = Secret(key_text)
    if not private_key:
        reader.error(
            ("dkim",),
            f"DKIM is set up but has no key: set {DKIM_PRIVATE_KEY_ENV} or dkim.private_key_path",
        )
        return None
    names = reader.read(
        (
            Field("dkim.domain", text, default=_env(env, DKIM_DOMAIN_ENV) or REQUIRED),
            Field("dkim.selector", text, default=_env(env, DKIM_SELECTOR_ENV) or REQUIRED),
        ),
        env,
    )
    return DkimSettings(**names, private_key=private_key)


def _read_imap(reader: FieldReader, env: Mapping[str, str]) -> ImapSettings | None:
    values = reader.read(IMAP_FIELDS, env)
    if values["folder"] == values["processed_folder"]:
        written = reader.value_at(("inbox", "imap", "processed_folder")) is not None
        reader.error(
            ("inbox", "imap", "processed_folder" if written else "folder"),
            f"`inbox.imap.folder` and `inbox.imap.processed_folder` are both "
            f"`{values['folder']}`; processed messages must move to another folder",
        )
    host = values.pop("host")
    return ImapSettings(host=host, **values) if host else None
