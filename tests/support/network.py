"""Network traffic in tests goes to 127.0.0.1 only: enforced, not just intended.

An autouse fixture wraps socket connects and name look-ups for every test. A
test that tries to reach any other host (a provider's real API because a URL
override was forgotten, say) gets a connection error at once, and fails at
teardown naming the host, even if the code under test swallowed the error.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str | bytes | None) -> bool:
    if host is None:
        return True  # binding to "any": not a connection
    name = host.decode() if isinstance(host, bytes) else host
    if name in LOOPBACK_NAMES or name == "":
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    refused: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address and not is_loopback(address[0]):
            refused.append(str(address[0]))
            raise OSError(errno.ENETUNREACH, f"tests may only reach 127.0.0.1, not {address[0]}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_loopback(host):
            refused.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"tests may only reach 127.0.0.1, not {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield refused
    assert not refused, (
        f"the test tried to reach {sorted(set(refused))}: tests may only reach 127.0.0.1"
    )
