"""Secrets (SMTP password, API keys) never appear in output, logs, exceptions or files.

Each test sets real secrets in the environment, runs `newsletter --verbose ...`
against a real server on 127.0.0.1 that refuses (or even echoes) them, and
looks for the secret, and the base64 forms SMTP AUTH uses, everywhere a
person or a log collector could see it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core.project import open_project
from tests.support.smtp import SmtpTestServer

ISSUE = "2023-05-panel-reports"
USERNAME = "comms-robot"
PASSWORD = "Sm7p-S3cret-Pa55word!"
POSTMARK_TOKEN = "pm-T0ken-7f3c9d2e-secret"
MAILJET_KEY = "mj-Key-0a1b2c3d-secret"
MAILJET_SECRET = "mj-Secret-9z8y7x-secret"
UNSUBSCRIBE_SECRET = "unsub-Hm4c-5ecret-b1t5"


def secret_forms() -> list[str]:
    forms = [PASSWORD, POSTMARK_TOKEN, MAILJET_KEY, MAILJET_SECRET, UNSUBSCRIBE_SECRET]
    forms.append(base64.b64encode(PASSWORD.encode()).decode())
    forms.append(base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode())
    forms.append(base64.b64encode(f"{MAILJET_KEY}:{MAILJET_SECRET}".encode()).decode())
    return forms


def assert_no_secret(where: str, text: str) -> None:
    for form in secret_forms():
        assert form not in text, f"a secret appeared in {where}"


def assert_no_secret_anywhere(result: Result, caplog: pytest.LogCaptureFixture, root: Path) -> None:
    assert_no_secret("the output", result.output)
    assert_no_secret("the logs", caplog.text)
    if result.exception is not None:
        assert_no_secret("the exception", repr(result.exception) + str(result.exception))
        assert result.exc_info is not None
        assert_no_secret("the traceback", "".join(traceback.format_exception(*result.exc_info)))
    for path in root.rglob("*"):
        if path.is_file():
            assert_no_secret(str(path), path.read_bytes().decode("latin-1"))


@pytest.fixture
def secret_env(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", USERNAME)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", POSTMARK_TOKEN)
    monkeypatch.setenv("NEWSLETTER_MAILJET_API_KEY", MAILJET_KEY)
    monkeypatch.setenv("NEWSLETTER_MAILJET_SECRET_KEY", MAILJET_SECRET)
    monkeypatch.setenv("NEWSLETTER_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)
    return project_dir


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(root), "--verbose", *args])


def auth_server(
    factory: Callable[..., SmtpTestServer], accept: bool, monkeypatch: pytest.MonkeyPatch
) -> SmtpTestServer:
    def authenticator(*args: Any) -> AuthResult:
        return AuthResult(success=accept, handled=False)

    server = factory(authenticator=authenticator, auth_require_tls=False)
    server.configure(monkeypatch)
    return server


def test_settings_never_show_their_secrets(secret_env: Path) -> None:
    settings = open_project(secret_env).settings
    assert_no_secret("repr(settings)", repr(settings) + str(settings))
    assert settings.smtp.password is not None and settings.smtp.password.reveal() == PASSWORD


def test_refused_smtp_login_names_the_variable_not_the_password(
    secret_env: Path,
    smtp_server_factory: Callable[..., SmtpTestServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = auth_server(smtp_server_factory, False, monkeypatch)
    result = run(secret_env, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert result.exit_code == 1
    assert "NEWSLETTER_SMTP_PASSWORD" in result.output
    assert "refused the username and password" in result.output
    assert server.messages == []
    assert_no_secret_anywhere(result, caplog, secret_env)


@pytest.mark.slow  # all 67 people through an SMTP login, with debug logging
def test_a_verbose_send_with_login_shows_no_password(
    secret_env: Path,
    smtp_server_factory: Callable[..., SmtpTestServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = auth_server(smtp_server_factory, True, monkeypatch)
    for args in (("send", ISSUE), ("send", ISSUE, "--format", "json")):
        dry = run(secret_env, *args)
        assert dry.exit_code == 0, dry.output
        assert_no_secret_anywhere(dry, caplog, secret_env)
    result = run(secret_env, "send", ISSUE, "--send", "--yes", "--rate", "0")
    assert result.exit_code == 0, result.output
    assert f"login as {USERNAME}" in result.output
    assert len(server.messages) == 67
    for received in server.messages:
        assert_no_secret("a delivered message", received.data.decode("latin-1"))
    report = run(secret_env, "report", ISSUE, "--format", "json")
    assert json.loads(report.stdout)["counts"]["sent"] == 67
    assert_no_secret_anywhere(result, caplog, secret_env)
    assert_no_secret_anywhere(report, caplog, secret_env)


class _EchoingApi(BaseHTTPRequestHandler):
    """An API that refuses every request and, carelessly, repeats the credentials it got."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        echoed = {k: v for k, v in self.headers.items()}
        body = json.dumps(
            {"ErrorCode": 10, "Message": f"Bad or missing API token: {echoed}"}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echoing_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize("provider", ["postmark", "mailjet"])
def test_an_api_that_echoes_the_key_cannot_make_us_print_it(
    secret_env: Path,
    echoing_api: str,
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(f"NEWSLETTER_{provider.upper()}_URL", echoing_api)
    result = run(
        secret_env, "send", ISSUE, "--send", "--yes", "--rate", "0", "--transport", provider
    )
    assert result.exit_code == 1
    assert_no_secret_anywhere(result, caplog, secret_env)
    test_copy = run(
        secret_env, "send", ISSUE, "--test-to", "me@example.org", "--transport", provider
    )
    assert test_copy.exit_code == 1
    assert_no_secret_anywhere(test_copy, caplog, secret_env)
