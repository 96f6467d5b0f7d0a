"""`newsletter serve` running for real: a subprocess on 127.0.0.1 with a free port.

Fixtures:
- `serve_server`: the sample project with one-click unsubscribe on (an https
  `unsubscribe.url` and the signing secret) and both provider webhooks
  configured, served by `newsletter serve --port 0` in a subprocess. The
  fixture reads the port the command prints, and at teardown stops it with
  SIGTERM, as systemd does, and fails the test if it did not exit cleanly or
  printed a traceback.
- `impatient_serve_server`: the same, but the ledger waits only
  `IMPATIENT_BUSY_TIMEOUT_MS` for another process's write lock instead of
  `connection.BUSY_TIMEOUT_MS` (30 s), for the tests that hold the lock on
  purpose: the command is the real one, started through `python -c` so the
  module constant can be set first, as `tests/ledger` sets it in-process.

`ServeProcess.link(address)` builds the person's link exactly as a message
does (`links.unsubscribe_https_url`) and points it at the local server.
`ServeProcess.session()` is an HTTP client that ignores proxy settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from newsletter.core.project import open_project
from newsletter.render.links import unsubscribe_https_url
from tests.support.project import ONE_CLICK_URL, enable_one_click

PUBLIC_BASE = ONE_CLICK_URL.rsplit("/", 1)[0]  # https://news.example.org
ISSUE_ID = "2023-05-panel-reports"
WEBHOOK_USERS = {
    "postmark": ("postmark-hook", "pm-hook-password-3c1e9a"),
    "mailjet": ("mailjet-hook", "mj-hook-password-77b0d2"),
}
START_TIMEOUT_SECONDS = 30
IMPATIENT_BUSY_TIMEOUT_MS = 1_000
# `python -m newsletter`, after shortening how long a write waits for a lock.
_IMPATIENT_MAIN = (
    "import newsletter.ledger.connection as connection; "
    "connection.BUSY_TIMEOUT_MS = {busy_timeout_ms}; "
    "from newsletter.cli import main; main()"
)
LISTENING = "newsletter serve: listening on "


@dataclass
class ServeProcess:
    project_dir: Path
    base_url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def suppressed_path(self) -> Path:
        return self.project_dir / "recipients" / "suppressed.csv"

    @property
    def ledger_path(self) -> Path:
        return self.project_dir / "var" / "ledger.sqlite3"

    def link(self, address: str) -> str:
        """The person's one-click link as a message carries it, aimed at this server."""
        return self.links([address])[address]

    def links(self, addresses: list[str]) -> dict[str, str]:
        """`link` for each address, the project read once for them all."""
        project = open_project(self.project_dir)
        issue = project.load_issue(ISSUE_ID)
        found = {}
        for address in addresses:
            url = unsubscribe_https_url(project.settings, issue, address)
            assert url is not None and url.startswith(PUBLIC_BASE)
            found[address] = self.local(url)
        return found

    def local(self, public_url: str) -> str:
        """A public URL (as in a message or a page) aimed at this server instead."""
        if public_url.startswith("/"):
            return self.base_url + public_url
        assert public_url.startswith(PUBLIC_BASE), public_url
        return self.base_url + public_url[len(PUBLIC_BASE) :]

    @staticmethod
    def session() -> requests.Session:
        client = requests.Session()
        client.trust_env = False  # no proxy: the server is on 127.0.0.1
        return client


def _read_output(server: ServeProcess, ready: threading.Event) -> None:
    """Collect everything the command prints; note when it says where it listens."""
    assert server.process.stdout is not None
    for line in server.process.stdout:
        server.output.append(line)
        if line.startswith(LISTENING):
            server.base_url = line[len(LISTENING) :].strip()
            ready.set()
    ready.set()  # the process ended (or closed its output) without listening


def start_serve(project_dir: Path, *extra: str, busy_timeout_ms: int | None = None) -> ServeProcess:
    """Start `newsletter serve --port 0` for `project_dir` and wait until it listens.

    `busy_timeout_ms`, when given, replaces the ledger's wait for a write lock.
    """
    if busy_timeout_ms is None:
        launcher = ["-m", "newsletter"]
    else:
        launcher = ["-c", _IMPATIENT_MAIN.format(busy_timeout_ms=int(busy_timeout_ms))]
    command = [
        sys.executable,
        *launcher,
        "--root",
        str(project_dir),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *extra,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    server = ServeProcess(project_dir, "", process)
    ready = threading.Event()
    server.reader = threading.Thread(target=_read_output, args=(server, ready), daemon=True)
    server.reader.start()
    if not ready.wait(START_TIMEOUT_SECONDS) or not server.base_url:
        process.kill()
        stop_serve_output(server)
        pytest.fail(f"newsletter serve did not start: {''.join(server.output)}")
    return server


def stop_serve_output(server: ServeProcess) -> None:
    server.process.wait(timeout=30)
    if server.reader is not None:
        server.reader.join(timeout=10)
    if server.process.stdout is not None:
        server.process.stdout.close()


def stop_serve(server: ServeProcess) -> None:
    """SIGTERM, as systemd stops it; it must exit 0 without a traceback."""
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        stop_serve_output(server)
        pytest.fail("newsletter serve did not stop on SIGTERM")
    stop_serve_output(server)
    printed = "".join(server.output)
    assert code == 0, printed
    assert "Traceback" not in printed, printed


def _serve_sample(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, busy_timeout_ms: int | None = None
) -> Iterator[ServeProcess]:
    enable_one_click(project_dir, monkeypatch)
    for provider, (username, password) in WEBHOOK_USERS.items():
        monkeypatch.setenv(f"NEWSLETTER_{provider.upper()}_WEBHOOK_USERNAME", username)
        monkeypatch.setenv(f"NEWSLETTER_{provider.upper()}_WEBHOOK_PASSWORD", password)
    server = start_serve(project_dir, "--threads", "8", busy_timeout_ms=busy_timeout_ms)
    try:
        yield server
    finally:
        stop_serve(server)


@pytest.fixture
def serve_server(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeProcess]:
    yield from _serve_sample(project_dir, monkeypatch)


@pytest.fixture
def impatient_serve_server(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServeProcess]:
    yield from _serve_sample(project_dir, monkeypatch, IMPATIENT_BUSY_TIMEOUT_MS)
