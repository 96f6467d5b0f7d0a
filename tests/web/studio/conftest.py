"""`newsletter studio` running for real: a subprocess on a free 127.0.0.1 port, on a copy of the sample.

Fixtures:
- `studio`: the sample project (rate limit lifted, so sends take a moment)
  served by `newsletter studio --port 0 --no-browser`. The fixture reads the
  link the command prints (it carries the start token); `studio.session()`
  is an HTTP client already signed in (the token swapped for the cookie),
  sending this studio's Origin. At teardown the studio is stopped with
  SIGTERM and must exit 0 without a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.support.project import SAMPLE_ISSUE, speed_up

START_TIMEOUT_SECONDS = 30
OPEN_LINE = re.compile(r"^newsletter studio: open (http://127\.0\.0\.1:(\d+)/\?token=(\S+)) ")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
HASH_FIELD = re.compile(r'name="base_hash" value="([^"]+)"')


class FormFields(HTMLParser):
    """The fields a browser would post from the page's issue form (no submit button)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        name = found.get("name")
        ticked = found.get("type") not in ("checkbox", "radio", "submit") or "checked" in found
        if tag == "input" and name and ticked:
            self.fields.append((name, found.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields.append((name, ""))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            name, value = self.fields.pop()
            self.fields.append((name, value + data))

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None


@dataclass
class StudioProcess:
    project_dir: Path
    process: subprocess.Popen[str]
    start_url: str = ""
    port: int = 0
    token: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.base_url

    def issue_path(self, issue_id: str = SAMPLE_ISSUE) -> Path:
        return self.project_dir / "issues" / f"{issue_id}.yaml"

    def session(self) -> requests.Session:
        """A client signed in as the browser is after opening the printed link."""
        client = requests.Session()
        client.trust_env = False  # no proxy: the studio is on 127.0.0.1
        response = client.get(self.start_url, allow_redirects=False)
        assert response.status_code == 303, response.text
        client.headers["Origin"] = self.origin
        return client

    def csrf(self, client: requests.Session, path: str = "/") -> str:
        match = CSRF_FIELD.search(client.get(self.base_url + path).text)
        if match is None:
            match = CSRF_FIELD.search(client.get(self.base_url + "/issues/new").text)
        assert match is not None
        return match.group(1)


def _read_output(studio: StudioProcess, ready: threading.Event) -> None:
    assert studio.process.stdout is not None
    for line in studio.process.stdout:
        studio.output.append(line)
        found = OPEN_LINE.match(line.strip())
        if found:
            studio.start_url, studio.port, studio.token = (
                found.group(1),
                int(found.group(2)),
                found.group(3),
            )
            ready.set()
    ready.set()


def start_studio(project_dir: Path, *extra: str) -> StudioProcess:
    command = [
        sys.executable,
        "-m",
        "newsletter",
        "--root",
        str(project_dir),
        "studio",
        "--port",
        "0",
        "--no-browser",
        *extra,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
    )
    studio = StudioProcess(project_dir, process)
    ready = threading.Event()
    studio.reader = threading.Thread(target=_read_output, args=(studio, ready), daemon=True)
    studio.reader.start()
    if not ready.wait(START_TIMEOUT_SECONDS) or not studio.port:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        pytest.fail(f"newsletter studio did not start: {''.join(studio.output)}")
    return studio


def stop_studio(studio: StudioProcess) -> None:
    studio.process.send_signal(signal.SIGTERM)
    try:
        code = studio.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        studio.process.kill()
        studio.process.wait(timeout=10)
        pytest.fail("newsletter studio did not stop on SIGTERM")
    if studio.reader is not None:
        studio.reader.join(timeout=10)
    if studio.process.stdout is not None:
        studio.process.stdout.close()
    printed = "".join(studio.output)
    assert code == 0, printed
    assert "Traceback" not in printed, printed


@pytest.fixture
def studio(project_dir: Path) -> Iterator[StudioProcess]:
    speed_up(project_dir)
    running = start_studio(project_dir)
    try:
        yield running
    finally:
        stop_studio(running)
