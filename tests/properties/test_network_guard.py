"""The loopback-only guard really refuses other hosts (so the rule is enforced)."""

from __future__ import annotations

import socket

import pytest

from tests.support.network import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "::1", "localhost"])
def test_loopback_addresses_are_allowed(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["api.postmarkapp.com", "10.0.0.1", "192.168.1.1", "8.8.8.8"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_connection_to_another_host_is_refused_and_recorded(loopback_only: list[str]) -> None:
    probe = socket.socket()
    try:
        with pytest.raises(OSError, match=r"tests may only reach 127\.0\.0\.1"):
            probe.connect(("203.0.113.1", 25))  # a documentation address: never routed
    finally:
        probe.close()
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.postmarkapp.com", 443)
    assert loopback_only == ["203.0.113.1", "api.postmarkapp.com"]
    loopback_only.clear()  # recorded as intended; let teardown pass
