"""The team's settings (`newsletter.yaml`), with environment overrides.

Settings are loaded once into one frozen `Settings` object. Secrets (SMTP
password, API keys, DKIM key) come only from the environment, and are held in
`Secret` so that printing or logging a settings object never shows them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.checks import email_problem, link_problem, unknown_fields
from newsletter.errors import ContentError, Problem
from newsletter.yamlfile import YamlDocument, load_yaml

DEFAULT_TIMEZONE = "Europe/London"
SMTP_SECURITY = ("starttls", "ssl", "none")
TRANSPORTS = ("outbox", "smtp", "postmark", "mailjet")


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


@dataclass(frozen=True)
class RateSettings:
    """Sending caps; None means no cap at that scale."""

    per_second: float | None = None
    per_minute: int | None = None
    per_hour: int | None = None


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 5
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0
    hard_bounce_after: int = 1


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

_TOP_FIELDS = (
    "organisation", "from", "reply_to", "postal_address", "footer", "unsubscribe",
    "archive_base_url", "list_id", "timezone", "transport", "ledger_path", "outbox_dir",
    "lock_path", "dispatch_log_path", "smtp", "rate", "retry", "dispatch", "dkim", "providers",
)  # fmt: skip
_SMTP_FIELDS = ("host", "port", "security", "connections", "timeout_seconds")
_RATE_FIELDS = ("per_second", "per_minute", "per_hour")
_RETRY_FIELDS = ("max_attempts", "base_delay_seconds", "max_delay_seconds", "hard_bounce_after")
_DKIM_FIELDS = ("domain", "selector", "private_key_path")
_SECRET_LOOKING = ("password", "api_key", "token", "secret", "private_key")
_SECRET_ENV = {
    "smtp.password": "NEWSLETTER_SMTP_PASSWORD",
    "dkim.private_key": "NEWSLETTER_DKIM_PRIVATE_KEY",
}


class _Reader:
    """Reads typed fields from the settings document, collecting located problems."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def block(self, key: str, known: tuple[str, ...]) -> dict[str, Any]:
        value = self.doc.data.get(key) if isinstance(self.doc.data, dict) else None
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append(self.doc.problem((key,), f"`{key}` must be a block of settings"))
            return {}
        secrets = [
            name
            for name in value
            if any(word in str(name).lower() for word in _SECRET_LOOKING)
            and not str(name).endswith("_path")
        ]
        # A secret-looking key gets one clear message, not also "is not a field".
        ordinary = {k: v for k, v in value.items() if k not in secrets}
        self.problems += unknown_fields(self.doc, (key,), ordinary, known, f"the `{key}` settings")
        for name in secrets:
            env_name = _SECRET_ENV.get(f"{key}.{name}")
            where = (
                f"set {env_name} in the environment instead"
                if env_name
                else ("secrets come only from environment variables, never from newsletter.yaml")
            )
            self.problems.append(
                self.doc.problem(
                    (key, str(name)), f"`{key}.{name}` looks like a secret; {where}", at_key=True
                )
            )
        return value

    def text(
        self, mapping: Mapping[str, Any], key_path: tuple[str, ...], default: str | None
    ) -> str:
        value = mapping.get(key_path[-1], default)
        if value is None:
            self.problems.append(
                self.doc.problem(key_path, f"`{'.'.join(key_path)}` is required", at_key=True)
            )
            return ""
        if not isinstance(value, str | int | float):
            self.problems.append(self.doc.problem(key_path, f"`{'.'.join(key_path)}` must be text"))
            return ""
        return str(value)

    def number(
        self, mapping: Mapping[str, Any], key_path: tuple[str, ...], default: float | None
    ) -> float | None:
        value = mapping.get(key_path[-1], default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.problems.append(
                self.doc.problem(key_path, f"`{'.'.join(key_path)}` must be a number of 0 or more")
            )
            return default
        return value


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
    """Load settings, returning them (None if unusable) with every problem found."""
    env = os.environ if environ is None else environ
    root_dir = root_dir.resolve()
    path = root_dir / "newsletter.yaml"
    doc = load_yaml(path)
    if doc.problems and doc.data is None:
        return None, list(doc.problems)
    reader = _Reader(doc)
    reader.problems += doc.problems
    data = doc.data
    if not isinstance(data, dict):
        return None, [Problem(path, 1, 1, "newsletter.yaml must be a block of settings")]
    reader.problems += unknown_fields(doc, (), data, _TOP_FIELDS, "the settings")

    sender = reader.block("from", ("name", "address"))
    from_name = reader.text(sender, ("from", "name"), None)
    from_address = reader.text(sender, ("from", "address"), None)
    reply_to = reader.text(data, ("reply_to",), from_address or None)
    for key_path, address in ((("from", "address"), from_address), (("reply_to",), reply_to)):
        if address and (why := email_problem(address)):
            reader.problems.append(doc.problem(key_path, why))

    unsubscribe = reader.block("unsubscribe", ("mailto", "url"))
    unsubscribe_mailto = reader.text(unsubscribe, ("unsubscribe", "mailto"), None)
    if unsubscribe_mailto and (why := email_problem(unsubscribe_mailto.removeprefix("mailto:"))):
        reader.problems.append(doc.problem(("unsubscribe", "mailto"), why))
    unsubscribe_url = unsubscribe.get("url")
    if unsubscribe_url is not None and (why := link_problem(unsubscribe_url)):
        reader.problems.append(doc.problem(("unsubscribe", "url"), why))
    if isinstance(unsubscribe_url, str) and unsubscribe_url.startswith("mailto:"):
        reader.problems.append(
            doc.problem(("unsubscribe", "url"), "`unsubscribe.url` must be an https: address")
        )

    archive_base_url = reader.text(data, ("archive_base_url",), None)
    if archive_base_url and (why := link_problem(archive_base_url)):
        reader.problems.append(doc.problem(("archive_base_url",), why))
    if archive_base_url and not archive_base_url.endswith("/"):
        archive_base_url += "/"

    timezone = reader.text(data, ("timezone",), DEFAULT_TIMEZONE)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        reader.problems.append(
            doc.problem(("timezone",), f"`{timezone}` is not a known time zone, e.g. Europe/London")
        )
        # `validate` still reads the issues' times with these settings; it must not crash.
        timezone = DEFAULT_TIMEZONE

    transport_env = _env(env, "NEWSLETTER_TRANSPORT")
    transport = transport_env or reader.text(data, ("transport",), "outbox")
    if transport not in TRANSPORTS:
        message = f"`{transport}` is not a transport; choose one of {', '.join(TRANSPORTS)}"
        # A bad value from the environment must not be blamed on a line of the file.
        reader.problems.append(
            Problem(path, 1, 1, f"NEWSLETTER_TRANSPORT {message}")
            if transport_env
            else doc.problem(("transport",), message)
        )

    smtp_block = reader.block("smtp", _SMTP_FIELDS)
    security_env = _env(env, "NEWSLETTER_SMTP_SECURITY")
    security = security_env or str(smtp_block.get("security", "starttls"))
    if security not in SMTP_SECURITY:
        message = f"`{security}` is not an SMTP security mode; use starttls, ssl or none"
        reader.problems.append(
            Problem(path, 1, 1, f"NEWSLETTER_SMTP_SECURITY {message}")
            if security_env
            else doc.problem(("smtp", "security"), message)
        )
    port_text = _env(env, "NEWSLETTER_SMTP_PORT")
    port: float | None
    if port_text is not None:
        try:
            port = int(port_text)
        except ValueError:
            reader.problems.append(
                Problem(path, 1, 1, f"NEWSLETTER_SMTP_PORT `{port_text}` is not a port number")
            )
            port = 587
    else:
        port = reader.number(smtp_block, ("smtp", "port"), 465 if security == "ssl" else 587)
    password = _env(env, "NEWSLETTER_SMTP_PASSWORD")
    smtp = SmtpSettings(
        host=_env(env, "NEWSLETTER_SMTP_HOST") or str(smtp_block.get("host", "localhost")),
        port=int(port or 587),
        security=security,
        username=_env(env, "NEWSLETTER_SMTP_USERNAME"),
        password=Secret(password) if password else None,
        connections=int(reader.number(smtp_block, ("smtp", "connections"), 1) or 1),
        timeout_seconds=float(reader.number(smtp_block, ("smtp", "timeout_seconds"), 30.0) or 30),
    )

    rate_block = reader.block("rate", _RATE_FIELDS)
    per_minute = reader.number(rate_block, ("rate", "per_minute"), None)
    per_hour = reader.number(rate_block, ("rate", "per_hour"), None)
    rate = RateSettings(
        per_second=reader.number(rate_block, ("rate", "per_second"), None),
        per_minute=int(per_minute) if per_minute else None,
        per_hour=int(per_hour) if per_hour else None,
    )

    retry_block = reader.block("retry", _RETRY_FIELDS)
    retry = RetrySettings(
        max_attempts=int(reader.number(retry_block, ("retry", "max_attempts"), 5) or 1),
        base_delay_seconds=float(
            reader.number(retry_block, ("retry", "base_delay_seconds"), 2.0) or 0
        ),
        max_delay_seconds=float(
            reader.number(retry_block, ("retry", "max_delay_seconds"), 300.0) or 0
        ),
        hard_bounce_after=int(reader.number(retry_block, ("retry", "hard_bounce_after"), 1) or 1),
    )

    dispatch_block = reader.block("dispatch", ("catch_up_days",))
    catch_up_days = int(reader.number(dispatch_block, ("dispatch", "catch_up_days"), 7) or 0)

    dkim = _read_dkim(reader, root_dir, env)
    providers = _read_providers(reader, env)

    def project_path(key: str, default: str, env_name: str | None = None) -> Path:
        value = (_env(env, env_name) if env_name else None) or reader.text(data, (key,), default)
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else root_dir / candidate

    settings = Settings(
        root_dir=root_dir,
        settings_path=path,
        organisation=reader.text(data, ("organisation",), None),
        from_name=from_name,
        from_address=from_address,
        reply_to=reply_to,
        postal_address=reader.text(data, ("postal_address",), None),
        footer=reader.text(data, ("footer",), ""),
        unsubscribe_mailto=unsubscribe_mailto.removeprefix("mailto:"),
        unsubscribe_url=unsubscribe_url if isinstance(unsubscribe_url, str) else None,
        archive_base_url=archive_base_url,
        list_id=reader.text(data, ("list_id",), None),
        timezone=timezone,
        transport=transport,
        ledger_path=project_path("ledger_path", "var/ledger.sqlite3", "NEWSLETTER_LEDGER_PATH"),
        outbox_dir=project_path("outbox_dir", "outbox", "NEWSLETTER_OUTBOX_DIR"),
        lock_path=project_path("lock_path", "var/dispatch.lock"),
        dispatch_log_path=project_path("dispatch_log_path", "var/dispatch.log"),
        catch_up_days=catch_up_days,
        smtp=smtp,
        rate=rate,
        retry=retry,
        dkim=dkim,
        providers=providers,
    )
    return settings, reader.problems


def _read_dkim(reader: _Reader, root_dir: Path, env: Mapping[str, str]) -> DkimSettings | None:
    block = reader.block("dkim", _DKIM_FIELDS)
    key_text = _env(env, "NEWSLETTER_DKIM_PRIVATE_KEY")
    key_path_text = _env(env, "NEWSLETTER_DKIM_PRIVATE_KEY_PATH") or block.get("private_key_path")
    if not block and not key_text:
        return None
    if key_text is None and key_path_text:
        key_path = Path(str(key_path_text)).expanduser()
        key_path = key_path if key_path.is_absolute() else root_dir / key_path
        try:
            key_text = key_path.read_text(encoding="ascii")
        except OSError as error:
            reader.problems.append(
                reader.doc.problem(
                    ("dkim", "private_key_path"),
                    f"the DKIM key file cannot be read ({error.strerror})",
                )
            )
            return None
    if not key_text:
        reader.problems.append(
            reader.doc.problem(
                ("dkim",),
                "DKIM is set up but has no key: set NEWSLETTER_DKIM_PRIVATE_KEY "
                "or dkim.private_key_path",
            )
        )
        return None
    domain = reader.text(block, ("dkim", "domain"), _env(env, "NEWSLETTER_DKIM_DOMAIN"))
    selector = reader.text(block, ("dkim", "selector"), _env(env, "NEWSLETTER_DKIM_SELECTOR"))
    return DkimSettings(domain=domain, selector=selector, private_key=Secret(key_text))


def _read_providers(reader: _Reader, env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    block = reader.block("providers", tuple(DEFAULT_PROVIDER_URLS))
    providers: dict[str, ProviderSettings] = {}
    for name, default_url in DEFAULT_PROVIDER_URLS.items():
        options = block.get(name) or {}
        if not isinstance(options, dict):
            reader.problems.append(
                reader.doc.problem(("providers", name), f"`providers.{name}` must be a block")
            )
            options = {}
        for option in options:
            if any(word in str(option).lower() for word in _SECRET_LOOKING):
                reader.problems.append(
                    reader.doc.problem(
                        ("providers", name, str(option)),
                        f"`providers.{name}.{option}` looks like a secret; set "
                        f"{PROVIDER_KEY_ENV[name][0]} in the environment instead",
                        at_key=True,
                    )
                )
        base_url = (
            _env(env, f"NEWSLETTER_{name.upper()}_URL") or options.get("base_url") or default_url
        )
        key_env, secret_env = PROVIDER_KEY_ENV[name]
        key = _env(env, key_env)
        secret = _env(env, secret_env) if secret_env else None
        providers[name] = ProviderSettings(
            name=name,
            base_url=str(base_url).rstrip("/"),
            api_key=Secret(key) if key else None,
            api_secret=Secret(secret) if secret else None,
            options={str(k): str(v) for k, v in options.items() if k != "base_url"},
        )
    return providers
