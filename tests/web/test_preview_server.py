"""The preview server under load and under attack: many page loads, idle sockets, forged Host.

Real sockets on 127.0.0.1 against the server in this process, and the real
`newsletter preview` command in a subprocess for the port handling.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from newsletter.core.project import Project
from newsletter.web.preview import PreviewServer, start_preview

ISSUE_ID = "2023-05-panel-reports"
CONCURRENT = 300
# Generous for a loaded machine; a backlog of 5 took about a minute (SYN retries).
LOAD_DEADLINE_SECONDS = 30
IDLE_TIMEOUT_SECONDS = 0.5


@pytest.fixture
def server(project: Project) -> Iterator[PreviewServer]:
    """The preview with its real (30 s) connection timeout."""
    running = start_preview(project, ISSUE_ID, port=0)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def impatient_server(project: Project) -> Iterator[PreviewServer]:
    """The preview closing connections idle for half a second, so a test need not wait 30."""
    running = start_preview(project, ISSUE_ID, port=0, connection_timeout=IDLE_TIMEOUT_SECONDS)
    try:
        yield running
    finally:
        running.stop()


def exchange(port: int, request: bytes) -> bytes:
    """Send `request` as is on a fresh connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def get_with_host(port: int, *host_lines: str) -> int:
    head = "".join(f"Host: {value}\r\n" for value in host_lines)
    return status_of(
        exchange(port, f"GET /state HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
    )


async def _load_page(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        answer = await reader.read()  # Connection: close: the answer ends when it closes
        return status_of(answer)
    finally:
        writer.close()


async def _load_all(port: int, count: int, path: str) -> list[int]:
    return await asyncio.wait_for(
        asyncio.gather(*(_load_page(port, path) for _ in range(count))), LOAD_DEADLINE_SECONDS
    )


@pytest.mark.parametrize("path", ["/", "/state"])
def test_hundreds_of_simultaneous_page_loads_are_all_answered(
    server: PreviewServer, path: str
) -> None:
    assert get_with_host(server.port, f"127.0.0.1:{server.port}") == 200  # render once first
    # In a thread of its own: the browser tests' Playwright keeps an event loop
    # running in the main thread, where asyncio.run() is refused.
    with ThreadPoolExecutor(max_workers=1) as pool:
        statuses = pool.submit(lambda: asyncio.run(_load_all(server.port, CONCURRENT, path)))
        assert statuses.result() == [200] * CONCURRENT


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1"])
def test_an_idle_connection_is_closed_by_the_server(
    impatient_server: PreviewServer, sent: bytes
) -> None:
    port = impatient_server.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        idle.sendall(sent)
        # Far longer than the server's timeout: a server that never closes fails here.
        assert idle.recv(1024) == b""
    # Its thread is free again, and the server still answers.
    assert get_with_host(port, f"127.0.0.1:{port}") == 200


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"]
)
def test_the_previews_own_addresses_are_answered(server: PreviewServer, host: str) -> None:
    assert get_with_host(server.port, host.format(port=server.port)) == 200


@pytest.mark.parametrize(
    ("hosts", "status"),
    [
        (["127.0.0.1:{port}@evil.test"], 400),  # user-info trick: the host is evil.test
        (["127.0.0.1:{port}/evil"], 400),
        (["127.0.0.1:{port} evil.test"], 400),
        (["127.0.0.1:x{port}"], 400),
        (["127.0.0.1:99999"], 400),  # no such port
        ([], 400),  # HTTP/1.1 requires a Host
        (["127.0.0.1:{port}", "evil.test"], 400),  # more than one
        (["evil.test:{port}"], 421),  # DNS rebinding: right port, another name
        (["evil.test"], 421),
        (["127.0.0.1.evil.test:{port}"], 421),
        (["127.0.0.1"], 421),  # another port (80)
        (["127.0.0.1:{other_port}"], 421),
        (["localhost"], 421),
    ],
)
def test_requests_for_any_other_host_are_refused(
    server: PreviewServer, hosts: list[str], status: int
) -> None:
    other_port = server.port + 1 if server.port < 65535 else server.port - 1
    lines = [host.format(port=server.port, other_port=other_port) for host in hosts]
    assert get_with_host(server.port, *lines) == status


def preview_command(project: Project, port: int) -> list[str]:
    root = str(project.root_dir)
    return [
        sys.executable,
        "-m",
        "newsletter",
        "--root",
        root,
        "preview",
        ISSUE_ID,
        "--port",
        str(port),
    ]


def test_a_busy_port_is_one_line_suggesting_port_0(project: Project) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            preview_command(project, port),
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ.copy(),
        )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} is already in use" in lines[0] and "--port 0" in lines[0]


def test_port_0_picks_a_free_port_and_prints_it(project: Project) -> None:
    process = subprocess.Popen(
        preview_command(project, 0),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        assert match, first
        port = int(match.group(1))
        assert port != 0
        assert get_with_host(port, f"127.0.0.1:{port}") == 200
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Stopped." in out and "Traceback" not in err
