"""The team's settings (`newsletter.yaml`), with environment overrides.

Settings are loaded once into one frozen `Settings` object. Secrets (SMTP
password, API keys, the Microsoft app registration's secret, DKIM key, the
unsubscribe secret, the IMAP login) come only from the environment, and are
held in `Secret` so that printing or logging a settings object never shows
them. This is the only module that reads the environment: everything else
is handed what it needs through `Settings`.

Each setting is declared once below as a `fields.Field`: where it is written,
how it is read and checked, its default, and the variable that overrides it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.core.checks import email_problem, link_problem
from newsletter.core.errors import ContentError, Problem
from newsletter.core.fields import (
    REQUIRED,
    Field,
    FieldReader,
    Invalid,
    Parser,
    cap,
    known_keys,
    number,
    seconds,
    text,
    whole_number,
)
from newsletter.core.paths import ProjectPaths
from newsletter.core.yamlfile import load_yaml

DEFAULT_TIMEZONE = "Europe/London"
UNSUBSCRIBE_SECRET_ENV = "NEWSLETTER_UNSUBSCRIBE_SECRET"
SMTP_SECURITY = ("starttls", "ssl", "none")
SMTP_AUTH = ("password", "oauth2", "none")
# Microsoft identity (the app registration), for SMTP with OAuth2 and for Graph.
OAUTH_TENANT_ENV = "NEWSLETTER_OAUTH_TENANT_ID"
OAUTH_CLIENT_ID_ENV = "NEWSLETTER_OAUTH_CLIENT_ID"
OAUTH_CLIENT_SECRET_ENV = "NEWSLETTER_OAUTH_CLIENT_SECRET"
OAUTH_CERTIFICATE_ENV = "NEWSLETTER_OAUTH_CERTIFICATE_PATH"
OAUTH_CERTIFICATE_PASSWORD_ENV = "NEWSLETTER_OAUTH_CERTIFICATE_PASSWORD"
OAUTH_AUTHORITY_ENV = "NEWSLETTER_OAUTH_AUTHORITY"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
GRAPH_URL_ENV = "NEWSLETTER_GRAPH_URL"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
# Graph allows four requests at a time per mailbox.
GRAPH_MAX_CONNECTIONS = 4
NOTIFY_API_KEY_ENV = "NEWSLETTER_NOTIFY_API_KEY"
NOTIFY_URL_ENV = "NEWSLETTER_NOTIFY_URL"
DEFAULT_NOTIFY_URL = "https://api.notifications.service.gov.uk"
# Where HTTPS clients find the certificate authorities to trust, in requests' own order.
CA_BUNDLE_ENVS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


class Secret:
    """A secret value that never shows itself in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: Secret | None = None
    connections: int = 1
    timeout_seconds: float = 30.0
    # password: log in with the username and password, if set; oauth2: XOAUTH2 with a
    # Microsoft app-only token (`Settings.oauth`); none: never log in.
    auth: str = "password"


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
class ProviderSettings:
    """An HTTP email API provider: where it is and the key to use (from the environment)."""

    name: str
    base_url: str
    api_key: Secret | None = None
    api_secret: Secret | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OAuthSettings:
    """The Microsoft Entra app registration the Microsoft 365 routes sign in as (environment only)."""

    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    certificate_path: Path | None = None
    certificate_password: Secret | None = None
    authority: str = DEFAULT_AUTHORITY

    def missing(self) -> list[str]:
        """The environment variables still to set before a token can be asked for."""
        missing = [
            name
            for name, value in (
                (OAUTH_TENANT_ENV, self.tenant_id),
                (OAUTH_CLIENT_ID_ENV, self.client_id),
            )
            if not value
        ]
        if not self.client_secret and self.certificate_path is None:
            missing.append(f"{OAUTH_CLIENT_SECRET_ENV} (or {OAUTH_CERTIFICATE_ENV})")
        return missing


@dataclass(frozen=True)
class GraphSettings:
    """Microsoft Graph sendMail: the mailbox sent as, and where Graph is."""

    sender: str = ""
    base_url: str = DEFAULT_GRAPH_URL
    connections: int = 1


@dataclass(frozen=True)
class NotifySettings:
    """GOV.UK Notify: the `((subject))`/`((body))` template, the reply-to, the key."""

    template_id: str | None = None
    reply_to_id: str | None = None
    api_key: Secret | None = None
    base_url: str = DEFAULT_NOTIFY_URL

    def missing(self) -> list[str]:
        """What is still to be set before Notify can send."""
        missing = [] if self.api_key else [NOTIFY_API_KEY_ENV]
        return missing + ([] if self.template_id else ["notify.template_id"])


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
    """Everything the pipeline needs to know about the team and its sending set-up."""

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
    smtp: SmtpSettings
    rate: RateSettings
    retry: RetrySettings
    dkim: DkimSettings | None
    providers: Mapping[str, ProviderSettings]
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
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    # What HTTPS clients trust: a CA bundle file from the environment, else the system's.
    https_verify: str | bool = True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


DEFAULT_PROVIDER_URLS = {
    "postmark": "https://api.postmarkapp.com",
    "mailjet": "https://api.mailjet.com",
}
# Each provider's credentials, read only from the environment: (key, secret).
PROVIDER_KEY_ENV = {
    "postmark": ("NEWSLETTER_POSTMARK_TOKEN", None),
    "mailjet": ("NEWSLETTER_MAILJET_API_KEY", "NEWSLETTER_MAILJET_SECRET_KEY"),
}


# --- how each kind of setting is read and checked ----------------------------


def _secret(value: str, name: str) -> Secret:
    return Secret(value)


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


def _port_text(value: str, name: str) -> int:
    try:
        return int(value) or 587
    except ValueError:
        raise Invalid(f"`{value}` is not a port number") from None


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


def _optional_text(value: object, name: str) -> str | None:
    return text(value, name).strip() or None


def _uuid(example: str) -> Parser:
    """An ID as Notify shows it (a UUID), or None when left empty."""

    def parse(value: object, name: str) -> str | None:
        written = text(value, name).strip()
        if not written:
            return None
        try:
            uuid.UUID(written)
        except ValueError:
            raise Invalid(
                f"`{name}` must be the ID GOV.UK Notify shows, a UUID such as {example}"
            ) from None
        return written

    return parse


def _https(value: object, name: str) -> str:
    """An https address (http only to this computer, where test servers and proxies live)."""
    url = text(value, name).strip().rstrip("/")
    parts = urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or (parts.scheme != "https" and not loopback):
        raise Invalid(
            f"`{url}` must be an https address, e.g. https://{parts.hostname or 'example.org'}"
        )
    return url


def _optional_path(value: object, name: str) -> Path | None:
    written = text(value, name).strip()
    return Path(written).expanduser() if written else None


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


def _address_problem(address: str | None) -> str | None:
    return email_problem(address) if address else None


def _https_problem(url: str) -> str | None:
    if why := link_problem(url):
        return why
    return "`unsubscribe.url` must be an https: address" if url.startswith("mailto:") else None


def _one_of(choices: tuple[str, ...], what: str, hint: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"`{value}` is not {what}; {hint}"


# --- the settings, as written in newsletter.yaml -----------------------------


def _settings_fields(paths: ProjectPaths) -> tuple[Field, ...]:
    """The fields of `Settings` itself (the blocks below fill its smtp, rate and retry)."""
    # The transports' registry is the one list of their names; imported here, not at
    # the top, because the transports themselves are configured from these settings.
    from newsletter.transports import TRANSPORT_NAMES

    in_project = partial(_in_project, paths.root_dir)
    return (
        Field("organisation", text),
        Field("from.name", text, attr="from_name"),
        Field("from.address", text, check=_address_problem, attr="from_address"),
        Field(
            "reply_to",
            text,
            default_from=lambda read: read["from_address"] or REQUIRED,
            check=_address_problem,
        ),
        Field("postal_address", text),
        Field("footer", text, default=""),
        Field(
            "unsubscribe.mailto", _mailto_address, check=_address_problem, attr="unsubscribe_mailto"
        ),
        Field("unsubscribe.url", _link, default=None, check=_https_problem, attr="unsubscribe_url"),
        Field(
            "unsubscribe.secret",
            _secret,
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
            check=_one_of(
                TRANSPORT_NAMES, "a transport", f"choose one of {', '.join(TRANSPORT_NAMES)}"
            ),
            env="NEWSLETTER_TRANSPORT",
        ),
        Field("ledger_path", in_project, default=paths.ledger_path, env="NEWSLETTER_LEDGER_PATH"),
        Field("outbox_dir", in_project, default=paths.outbox_dir, env="NEWSLETTER_OUTBOX_DIR"),
        Field("lock_path", in_project, default=paths.lock_path),
        Field("dispatch_log_path", in_project, default=paths.dispatch_log_path),
        Field("dispatch.catch_up_days", whole_number(), default=7, attr="catch_up_days"),
        Field("approval.approvers", _at_least_one, default=1, attr="approvers"),
        Field("approval.allow_approved_flag", _yes_no, default=False, attr="allow_approved_flag"),
        Field("approval.shared_account", _yes_no, default=False, attr="shared_account"),
        Field("bounce_address", _optional_text, default=None, check=_address_problem),
    )


SMTP_FIELDS = (
    Field("smtp.host", text, default="localhost", env="NEWSLETTER_SMTP_HOST"),
    Field(
        "smtp.security",
        text,
        default="starttls",
        check=_one_of(SMTP_SECURITY, "an SMTP security mode", "use starttls, ssl or none"),
        env="NEWSLETTER_SMTP_SECURITY",
    ),
    Field(
        "smtp.port",
        whole_number(zero_means=587),
        default_from=lambda read: 465 if read["security"] == "ssl" else 587,
        env="NEWSLETTER_SMTP_PORT",
        env_parse=_port_text,
    ),
    Field("smtp.username", text, default=None, env="NEWSLETTER_SMTP_USERNAME", in_file=False),
    Field("smtp.password", _secret, default=None, env="NEWSLETTER_SMTP_PASSWORD", in_file=False),
    Field("smtp.connections", whole_number(zero_means=1), default=1),
    Field("smtp.timeout_seconds", seconds(zero_means=30.0), default=30.0),
    Field(
        "smtp.auth",
        text,
        default="password",
        check=_one_of(SMTP_AUTH, "an SMTP login method", "use password, oauth2 or none"),
    ),
)
RATE_FIELDS = (
    Field("rate.per_second", number, default=None),
    Field("rate.per_minute", cap, default=None),
    Field("rate.per_hour", cap, default=None),
    Field("rate.per_day", cap, default=None),
)
# The app registration is not written down anywhere but the environment.
OAUTH_FIELDS = (
    Field("oauth.tenant_id", _optional_text, default=None, env=OAUTH_TENANT_ENV, in_file=False),
    Field("oauth.client_id", _optional_text, default=None, env=OAUTH_CLIENT_ID_ENV, in_file=False),
    Field("oauth.client_secret", _secret, default=None, env=OAUTH_CLIENT_SECRET_ENV, in_file=False),
    # Where the certificate is kept is not itself a secret: it may be written down.
    Field("oauth.certificate_path", _optional_path, default=None, env=OAUTH_CERTIFICATE_ENV),
    Field(
        "oauth.certificate_password",
        _secret,
        default=None,
        env=OAUTH_CERTIFICATE_PASSWORD_ENV,
        in_file=False,
    ),
    Field(
        "oauth.authority",
        _https,
        default=DEFAULT_AUTHORITY,
        env=OAUTH_AUTHORITY_ENV,
        in_file=False,
    ),
)
GRAPH_FIELDS = (
    Field("graph.sender", _optional_text, default=None, check=_address_problem),
    Field("graph.base_url", _https, default=DEFAULT_GRAPH_URL, env=GRAPH_URL_ENV),
    Field(
        "graph.connections",
        whole_number(zero_means=1),
        default=1,
        check=lambda n: (
            None
            if n <= GRAPH_MAX_CONNECTIONS
            else f"Graph allows {GRAPH_MAX_CONNECTIONS} requests at a time per mailbox; "
            f"`graph.connections` must be {GRAPH_MAX_CONNECTIONS} or fewer"
        ),
    ),
)
NOTIFY_FIELDS = (
    Field("notify.template_id", _uuid("f33517ff-2a88-4f6e-b855-c550268ce08a"), default=None),
    Field("notify.reply_to_id", _uuid("8e222534-7f05-4972-86e3-17c5d9f894e2"), default=None),
    Field("notify.api_key", _secret, default=None, env=NOTIFY_API_KEY_ENV, in_file=False),
    Field("notify.base_url", _https, default=DEFAULT_NOTIFY_URL, env=NOTIFY_URL_ENV),
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
    Field("inbox.imap.host", _optional_text, default=None, env="NEWSLETTER_IMAP_HOST"),
    Field("inbox.imap.port", _port, default=993),
    Field("inbox.imap.folder", _folder, default="INBOX"),
    Field("inbox.imap.processed_folder", _folder, default="Processed"),
    Field("inbox.imap.username", text, default=None, env="NEWSLETTER_IMAP_USERNAME", in_file=False),
    Field(
        "inbox.imap.password", _secret, default=None, env="NEWSLETTER_IMAP_PASSWORD", in_file=False
    ),
)
# DKIM is read only when it is set up; its domain and selector may come from
# the environment when the file leaves them out.
DKIM_KEY_FIELDS = (
    Field(
        "dkim.private_key", _secret, default=None, env="NEWSLETTER_DKIM_PRIVATE_KEY", in_file=False
    ),
    Field("dkim.private_key_path", text, default=None, env="NEWSLETTER_DKIM_PRIVATE_KEY_PATH"),
)
DKIM_KEYS = ("domain", "selector", "private_key_path")

_SECRET_LOOKING = ("password", "api_key", "token", "secret", "private_key")


def _secret_refusal(block: str, env_name: str | None, key: str) -> str | None:
    """Why `key` may not be written in the settings file, when it looks like a secret."""
    if not any(word in key.lower() for word in _SECRET_LOOKING):
        return None
    where = (
        f"set {env_name} in the environment instead"
        if env_name
        else "secrets come only from environment variables, never from newsletter.yaml"
    )
    return f"`{block}.{key}` looks like a secret; {where}"


def _block_refusal(block: str, env_only: Mapping[str, str | None], key: str) -> str | None:
    if key.endswith("_path"):  # where a secret is kept is not itself a secret
        return None
    env_name = env_only.get(f"{block}.{key}")
    if (why := _secret_refusal(block, env_name, key)) is not None:
        return why
    if env_name is not None:
        return f"`{block}.{key}` comes only from the environment; set {env_name} instead"
    return None


def _check_blocks(reader: FieldReader, fields: tuple[Field, ...]) -> None:
    """Unknown keys (with a did-you-mean), blocks that are not blocks, secrets written down."""
    declared = [f.key_path[:depth] for f in fields for depth in range(1, len(f.key_path))]
    blocks = {block: known_keys(fields, block) for block in dict.fromkeys(declared)}
    blocks.update({("dkim",): list(DKIM_KEYS), ("providers",): list(DEFAULT_PROVIDER_URLS)})
    env_only = {f.key: f.env for f in fields if not f.in_file}
    top = [*known_keys(fields), *(block[0] for block in blocks)]
    reader.mapping(reader.doc.data, (), list(dict.fromkeys(top)), "the settings")
    for block, known in blocks.items():
        value = reader.value_at(block)
        if value is not None:
            name = ".".join(block)
            reader.mapping(
                value,
                block,
                known,
                f"the `{name}` settings",
                not_a_mapping=f"`{name}` must be a block of settings",
                refuse=partial(_block_refusal, name, env_only),
            )


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
    _check_blocks(
        reader,
        (
            *fields,
            *SMTP_FIELDS,
            *RATE_FIELDS,
            *RETRY_FIELDS,
            *DKIM_KEY_FIELDS,
            *IMAP_FIELDS,
            *OAUTH_FIELDS,
            *GRAPH_FIELDS,
            *NOTIFY_FIELDS,
        ),
    )
    top = reader.read(fields, env)
    graph = reader.read(GRAPH_FIELDS, env)
    settings = Settings(
        root_dir=paths.root_dir,
        settings_path=paths.settings_path,
        **top,
        smtp=SmtpSettings(**reader.read(SMTP_FIELDS, env)),
        rate=RateSettings(**reader.read(RATE_FIELDS, env)),
        retry=RetrySettings(**reader.read(RETRY_FIELDS, env)),
        dkim=_read_dkim(reader, paths.root_dir, env),
        providers=_read_providers(reader, env),
        imap=_read_imap(reader, env),
        oauth=OAuthSettings(**reader.read(OAUTH_FIELDS, env)),
        # The mailbox Graph sends as is the From address unless said otherwise.
        graph=GraphSettings(**{**graph, "sender": graph["sender"] or top["from_address"] or ""}),
        notify=NotifySettings(**reader.read(NOTIFY_FIELDS, env)),
        https_verify=https_ca_bundle(env),
    )
    return settings, reader.problems


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
            "DKIM is set up but has no key: set NEWSLETTER_DKIM_PRIVATE_KEY "
            "or dkim.private_key_path",
        )
        return None
    names = reader.read(
        (
            Field("dkim.domain", text, default=_env(env, "NEWSLETTER_DKIM_DOMAIN") or REQUIRED),
            Field("dkim.selector", text, default=_env(env, "NEWSLETTER_DKIM_SELECTOR") or REQUIRED),
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


def _provider_fields(name: str, default_url: str) -> tuple[Field, ...]:
    key_env, secret_env = PROVIDER_KEY_ENV[name]
    return (
        Field(
            f"providers.{name}.base_url",
            text,
            default=default_url,
            env=f"NEWSLETTER_{name.upper()}_URL",
        ),
        Field(f"providers.{name}.api_key", _secret, default=None, env=key_env, in_file=False),
        Field(f"providers.{name}.api_secret", _secret, default=None, env=secret_env, in_file=False),
    )


def _read_providers(reader: FieldReader, env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    providers: dict[str, ProviderSettings] = {}
    for name, default_url in DEFAULT_PROVIDER_URLS.items():
        written = reader.value_at(("providers", name))
        options = (
            reader.mapping(
                written,
                ("providers", name),
                None,  # any option the provider's API takes
                f"`providers.{name}`",
                not_a_mapping=f"`providers.{name}` must be a block",
                refuse=partial(_secret_refusal, f"providers.{name}", PROVIDER_KEY_ENV[name][0]),
            )
            if written
            else {}
        )
        values = reader.read(_provider_fields(name, default_url), env)
        providers[name] = ProviderSettings(
            name=name,
            base_url=values["base_url"].rstrip("/") or default_url,
            api_key=values["api_key"],
            api_secret=values["api_secret"],
            options={str(k): str(v) for k, v in options.items() if k != "base_url"},
        )
    return providers
