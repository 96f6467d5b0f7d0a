"""Settings: environment overrides, secrets only from the environment, located mistakes."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import newsletter
import newsletter.core.settings
from newsletter.cli import cli
from newsletter.core.errors import ContentError
from newsletter.core.fields import Field, text
from newsletter.core.paths import ProjectPaths
from newsletter.core.setting_parts import SettingsBlock, secret
from newsletter.core.settings import (
    DKIM_DOMAIN_ENV,
    DKIM_SELECTOR_ENV,
    Secret,
    declared_fields,
    load_settings,
    read_settings,
)
from newsletter.transports import SETTINGS_BLOCKS, TRANSPORT_NAMES
from newsletter.transports.lookup import TRANSPORTS

PASSWORD = "correct-horse-battery-staple-5512"


def edit(project_dir: Path, old: str, new: str) -> Path:
    """Replace one exact piece of the sample newsletter.yaml."""
    path = project_dir / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path.resolve()


def validate(project_dir: Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--root", str(project_dir), "validate", "--quiet"], env=env)


def test_sample_settings_without_environment(project_dir: Path) -> None:
    settings = load_settings(project_dir, environ={})
    assert settings.transport == "outbox"
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security) == (
        "smtp.example.org",
        587,
        "starttls",
    )
    assert settings.smtp.username is None and settings.smtp.password is None
    assert settings.timezone == "Europe/London"
    assert settings.archive_base_url.endswith("/")
    assert settings.ledger_path == project_dir.resolve() / "var" / "ledger.sqlite3"


def test_environment_overrides_the_smtp_settings_and_transport(project_dir: Path) -> None:
    env = {
        "NEWSLETTER_SMTP_HOST": "relay.example.net",
        "NEWSLETTER_SMTP_PORT": "2525",
        "NEWSLETTER_SMTP_USERNAME": "comms-relay",
        "NEWSLETTER_SMTP_PASSWORD": PASSWORD,
        "NEWSLETTER_SMTP_SECURITY": "ssl",
        "NEWSLETTER_TRANSPORT": "smtp",
    }
    settings = load_settings(project_dir, environ=env)
    assert settings.transport == "smtp"
    assert settings.smtp.host == "relay.example.net"
    assert settings.smtp.port == 2525
    assert settings.smtp.username == "comms-relay"
    assert settings.smtp.security == "ssl"
    assert settings.smtp.password is not None
    assert settings.smtp.password.reveal() == PASSWORD
    assert settings.smtp.connections == 2  # still from the file


def test_environment_is_read_from_the_process_by_default(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "from-process.example.net")
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "postmark")
    settings = load_settings(project_dir)
    assert settings.smtp.host == "from-process.example.net"
    assert settings.transport == "postmark"


def test_ssl_without_a_port_defaults_to_465(project_dir: Path) -> None:
    edit(project_dir, "  port: 587\n", "")
    assert load_settings(project_dir, environ={}).smtp.port == 587
    assert load_settings(project_dir, environ={"NEWSLETTER_SMTP_SECURITY": "ssl"}).smtp.port == 465


def test_the_password_never_shows_in_repr_or_str(project_dir: Path) -> None:
    env = {
        "NEWSLETTER_SMTP_PASSWORD": PASSWORD,
        "NEWSLETTER_POSTMARK_TOKEN": PASSWORD + "-postmark",
        "NEWSLETTER_MAILJET_API_KEY": PASSWORD + "-mj-key",
        "NEWSLETTER_MAILJET_SECRET_KEY": PASSWORD + "-mj-secret",
    }
    settings = load_settings(project_dir, environ=env)
    for shown in (
        repr(settings),
        str(settings),
        f"{settings}",
        repr(settings.smtp),
        str(settings.smtp.password),
        f"{settings.smtp.password}",
        repr(settings.blocks),
    ):
        assert PASSWORD not in shown
    assert "********" in repr(settings.smtp)
    postmark_key = settings.postmark.api_key
    assert postmark_key is not None and postmark_key.reveal() == PASSWORD + "-postmark"


def test_the_unsubscribe_secret_comes_from_the_environment_and_never_shows(
    project_dir: Path,
) -> None:
    settings = load_settings(project_dir, environ={"NEWSLETTER_UNSUBSCRIBE_SECRET": PASSWORD})
    assert settings.unsubscribe_secret is not None
    assert settings.unsubscribe_secret.reveal() == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert load_settings(project_dir, environ={}).unsubscribe_secret is None


def test_an_unsubscribe_secret_in_the_settings_file_is_refused(project_dir: Path) -> None:
    path = edit(
        project_dir,
        "  mailto: unsubscribe@example.org\n",
        f"  mailto: unsubscribe@example.org\n  secret: {PASSWORD}\n",
    )
    result = validate(project_dir)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{path}:16:3: `unsubscribe.secret` looks like a secret; "
        "set NEWSLETTER_UNSUBSCRIBE_SECRET in the environment instead"
    )
    assert PASSWORD not in result.output


def test_secret_compares_by_value_and_is_false_when_empty() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert not Secret("") and Secret("x")


def test_a_password_in_the_settings_file_is_refused_with_its_location(project_dir: Path) -> None:
    path = edit(project_dir, "  connections: 2\n", f"  connections: 2\n  password: {PASSWORD}\n")
    result = validate(project_dir)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{path}:30:3: `smtp.password` looks like a secret; "
        "set NEWSLETTER_SMTP_PASSWORD in the environment instead"
    )
    assert PASSWORD not in result.output
    with pytest.raises(ContentError) as caught:
        load_settings(project_dir, environ={})
    assert PASSWORD not in str(caught.value)


def test_an_api_key_in_the_settings_file_is_refused_with_its_location(project_dir: Path) -> None:
    path = edit(
        project_dir,
        "    message_stream: broadcast\n",
        f"    message_stream: broadcast\n    api_key: {PASSWORD}\n",
    )
    result = validate(project_dir)
    assert result.exit_code == 1
    assert (
        f"{path}:48:5: `providers.postmark.api_key` looks like a secret; "
        "set NEWSLETTER_POSTMARK_TOKEN in the environment instead"
    ) in result.stderr.splitlines()
    assert PASSWORD not in result.output


def test_a_bad_security_value_is_located(project_dir: Path) -> None:
    path = edit(project_dir, "  security: starttls ", "  security: tls      ")
    result = validate(project_dir)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{path}:28:13: `tls` is not an SMTP security mode; use starttls, ssl or none"
    )


def test_a_bad_security_value_from_the_environment_names_the_variable(project_dir: Path) -> None:
    _, problems = read_settings(project_dir, environ={"NEWSLETTER_SMTP_SECURITY": "TLS"})
    assert [str(p) for p in problems] == [
        f"{project_dir.resolve() / 'newsletter.yaml'}:1:1: NEWSLETTER_SMTP_SECURITY `TLS` is not "
        "an SMTP security mode; use starttls, ssl or none"
    ]


def test_a_bad_transport_is_located(project_dir: Path) -> None:
    path = edit(project_dir, "transport: outbox ", "transport: sendgrid ")
    _, problems = read_settings(project_dir, environ={})
    assert [str(p) for p in problems] == [
        f"{path}:21:12: `sendgrid` is not a transport; choose one of outbox, smtp, postmark, mailjet, graph, notify"
    ]
    _, problems = read_settings(project_dir, environ={"NEWSLETTER_TRANSPORT": "smtp"})
    assert problems == []


def test_a_bad_port_from_the_environment_names_the_variable(project_dir: Path) -> None:
    result = validate(project_dir, env={"NEWSLETTER_SMTP_PORT": "five-eight-seven"})
    assert result.exit_code == 1
    assert "NEWSLETTER_SMTP_PORT `five-eight-seven` is not a port number" in result.stderr


def test_unknown_settings_suggest_the_nearest_name(project_dir: Path) -> None:
    path = edit(project_dir, "timezone: Europe/London", "time_zone: Europe/London")
    _, problems = read_settings(project_dir, environ={})
    assert [str(p) for p in problems] == [
        f"{path}:19:1: `time_zone` is not a field of the settings; did you mean `timezone`?"
    ]


def test_an_unknown_timezone_is_located(project_dir: Path) -> None:
    path = edit(project_dir, "timezone: Europe/London", "timezone: Europe/Lundon")
    _, problems = read_settings(project_dir, environ={})
    assert [str(p) for p in problems] == [
        f"{path}:19:11: `Europe/Lundon` is not a known time zone, e.g. Europe/London"
    ]


def test_broken_settings_yaml_is_located_not_a_traceback(project_dir: Path) -> None:
    path = edit(project_dir, "  port: 587\n", "  port: 587\n\tsecurity: ssl\n")
    result = validate(project_dir)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert (
        f"{path}:28:1: this line is indented with a tab (shown as →); YAML needs spaces: "
        "replace the tab with spaces, lined up with the lines above"
    ) in result.stderr.splitlines()


def test_validate_reports_an_unknown_timezone_instead_of_crashing(project_dir: Path) -> None:
    path = edit(project_dir, "timezone: Europe/London", "timezone: Europe/Lundon")
    result = validate(project_dir)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines()[0] == (
        f"{path}:19:11: `Europe/Lundon` is not a known time zone, e.g. Europe/London"
    )


def test_a_setting_left_empty_takes_its_default(project_dir: Path) -> None:
    text = (project_dir / "newsletter.yaml").read_text(encoding="utf-8")
    footer = text[text.index("footer: >-") : text.index("unsubscribe:")]
    edit(project_dir, footer, "footer:\n")
    edit(project_dir, "  connections: 2\n", "  connections:\n")
    settings, problems = read_settings(project_dir, environ={})
    assert problems == []
    assert settings is not None
    assert (settings.footer, settings.smtp.connections) == ("", 1)


def test_a_list_where_text_belongs_is_located(project_dir: Path) -> None:
    path = edit(project_dir, "  host: smtp.example.org", "  host: [smtp.example.org]")
    _, problems = read_settings(project_dir, environ={})
    assert [str(p) for p in problems] == [f"{path}:26:9: `smtp.host` must be text"]


# --- approval, bounce address and the inbox: declared like every other setting ------


def add(project_dir: Path, extra: str) -> tuple[Path, int]:
    """Append settings to the sample newsletter.yaml; return it and the line `extra` starts on."""
    path = project_dir / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + extra, encoding="utf-8")
    return path.resolve(), len(text.splitlines()) + 1


def test_the_bounce_address_is_read_and_checked(project_dir: Path) -> None:
    assert load_settings(project_dir, environ={}).bounce_address is None
    path, line = add(project_dir, "bounce_address: bounces@example.org\n")
    assert load_settings(project_dir, environ={}).bounce_address == "bounces@example.org"
    edit(project_dir, "bounce_address: bounces@example.org", "bounce_address: bounces@")
    _, problems = read_settings(project_dir, environ={})
    ((where, message),) = [(f"{p.path}:{p.line}:{p.column}", p.message) for p in problems]
    assert where == f"{path}:{line}:17"
    assert message.startswith("`bounces@` is not a valid email address")


def test_the_inbox_is_read_from_newsletter_yaml_and_the_login_from_the_environment(
    project_dir: Path,
) -> None:
    assert load_settings(project_dir, environ={}).imap is None
    add(project_dir, "inbox:\n  imap:\n    host: imap.example.org\n    folder: Bounces\n")
    env = {"NEWSLETTER_IMAP_USERNAME": "comms", "NEWSLETTER_IMAP_PASSWORD": PASSWORD}
    imap = load_settings(project_dir, environ=env).imap
    assert imap is not None
    assert (imap.host, imap.port, imap.folder, imap.processed_folder, imap.username) == (
        "imap.example.org",
        993,
        "Bounces",
        "Processed",
        "comms",
    )
    assert imap.password is not None and imap.password.reveal() == PASSWORD
    assert PASSWORD not in repr(imap)
    env["NEWSLETTER_IMAP_HOST"] = "imap.example.net"
    overridden = load_settings(project_dir, environ=env).imap
    assert overridden is not None and overridden.host == "imap.example.net"


def test_the_inbox_host_may_come_from_the_environment_alone(project_dir: Path) -> None:
    imap = load_settings(project_dir, environ={"NEWSLETTER_IMAP_HOST": "imap.example.org"}).imap
    assert imap is not None and (imap.host, imap.folder) == ("imap.example.org", "INBOX")


def test_inbox_mistakes_are_located(project_dir: Path) -> None:
    path, line = add(
        project_dir,
        "inbox:\n"
        "  imap:\n"
        "    host: imap.example.org\n"
        "    port: 99999\n"
        "    folder: Processed\n"
        "    username: comms\n"
        "    hots: typo\n",
    )
    _, problems = read_settings(project_dir, environ={})
    assert sorted(str(p) for p in problems) == sorted(
        [
            f"{path}:{line + 5}:5: `inbox.imap.username` comes only from the environment; "
            "set NEWSLETTER_IMAP_USERNAME instead",
            f"{path}:{line + 6}:5: `hots` is not a field of the `inbox.imap` settings; "
            "did you mean `host`?",
            f"{path}:{line + 3}:11: `inbox.imap.port` must be a port number (1 to 65535)",
            f"{path}:{line + 4}:13: `inbox.imap.folder` and `inbox.imap.processed_folder` are "
            "both `Processed`; processed messages must move to another folder",
        ]
    )


# -- each transport declares its own settings ----------------------------------


@dataclass(frozen=True)
class PigeonSettings:
    loft: str
    seed: Secret | None


PIGEON_BLOCK = SettingsBlock(
    "pigeon",
    (
        Field("pigeon.loft", text, default="roof", env="NEWSLETTER_PIGEON_LOFT"),
        Field("pigeon.seed", secret, default=None, env="NEWSLETTER_PIGEON_SEED", in_file=False),
    ),
    lambda values, context: PigeonSettings(**values),
)


def test_a_new_transport_declares_its_block_and_the_settings_read_it_unchanged(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transport's block is read, overridden and checked like any other setting, from its
    declaration alone: nothing in core/settings.py names it."""
    monkeypatch.setattr(
        newsletter.core.settings, "SETTINGS_BLOCKS", (*SETTINGS_BLOCKS, PIGEON_BLOCK)
    )
    path = edit(
        project_dir, "timezone: Europe/London", "timezone: Europe/London\npigeon:\n  loft: barn"
    )
    settings = load_settings(project_dir, environ={"NEWSLETTER_PIGEON_SEED": PASSWORD})
    assert settings.block("pigeon", PigeonSettings) == PigeonSettings("barn", Secret(PASSWORD))
    overridden = load_settings(project_dir, environ={"NEWSLETTER_PIGEON_LOFT": "shed"})
    assert overridden.block("pigeon", PigeonSettings).loft == "shed"

    edit(project_dir, "  loft: barn", "  loft: barn\n  seed: grain\n  lof: attic")
    _, problems = read_settings(project_dir, environ={})
    assert sorted(str(p) for p in problems) == [
        f"{path}:22:3: `pigeon.seed` comes only from the environment; set "
        "NEWSLETTER_PIGEON_SEED instead",
        f"{path}:23:3: `lof` is not a field of the `pigeon` settings; did you mean `loft`?",
    ]


def test_every_transport_block_is_read_and_every_transport_can_be_opened_by_name() -> None:
    assert tuple(TRANSPORTS) == TRANSPORT_NAMES
    assert [block.name for block in SETTINGS_BLOCKS] == [
        "smtp",
        "oauth",
        "graph",
        "notify",
        "postmark",
        "mailjet",
    ]


ENV_NAME = re.compile(r"\bNEWSLETTER_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")
PACKAGE = Path(newsletter.__file__).parent


def _string_literals(path: Path) -> Iterator[tuple[str, int]]:
    """Every string written in the code of `path`, and its line; docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node.value, node.lineno


def _written(places: tuple[str, ...]) -> dict[str, list[tuple[str, bool]]]:
    """Each NEWSLETTER_ name in code strings in `places` (modules or folders of the package):
    (where, whether it is the whole string, i.e. the name's definition rather than a mention
    in a message)."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for place in places:
        where_from = PACKAGE / place
        paths = [where_from] if where_from.is_file() else sorted(where_from.rglob("*.py"))
        for path in paths:
            for value, line in _string_literals(path):
                for name in ENV_NAME.findall(value):
                    where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                    found.setdefault(name, []).append((where, value == name))
    return found


def test_each_environment_variable_is_defined_once_and_mentioned_through_its_constant(
    project_dir: Path,
) -> None:
    """One place to rename a variable: its constant. The settings, the transports and the
    inbox, which read and explain them, never spell a variable out in a message; every module
    that needs one imports the constant from the block that declares it."""
    read = {f.env for f in declared_fields(ProjectPaths(project_dir)) if f.env}
    read |= {DKIM_DOMAIN_ENV, DKIM_SELECTOR_ENV}
    everywhere = _written(("",))
    for name in sorted(read):
        definitions = [where for where, whole in everywhere.get(name, []) if whole]
        assert len(definitions) == 1, f"{name} is defined at {definitions or 'no place'}"
    where_settings_live = _written(
        ("core/settings.py", "core/setting_parts.py", "transports", "inbox")
    )
    for name, places in sorted(where_settings_live.items()):
        spelled = [where for where, _ in places]
        assert [whole for _, whole in places] == [True], f"{name} is spelled out at {spelled}"


def test_reading_the_settings_loads_no_transport() -> None:
    """The registry holds declarations only: `validate` never pays for requests, smtplib or msal."""
    program = (
        "import sys, newsletter.core.settings\n"
        "print(sorted(m for m in ('requests', 'smtplib', 'msal', 'notifications_python_client')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
