"""A real Dovecot IMAP server for the `inbox` tests, started from a temporary configuration.

Fixture `dovecot`: `/usr/sbin/dovecot` (Debian packages dovecot-core and
dovecot-imapd) on 127.0.0.1 with a free port, IMAP over TLS only, with a
certificate signed by a test CA made here (`cryptography`), and one user in a
passwd-file. If Dovecot is not installed the test FAILS, saying how to
install it: an IMAP test never skips.

`server.client()` is an `imaplib.IMAP4_SSL` logged in as the user (verified
against the test CA); `server.append(folder, raw)` delivers a message the
way a mail server would file it; `server.messages(folder)` reads a folder
back; `server.configure(monkeypatch, project_dir)` points a project at it
(`inbox.imap` in newsletter.yaml, NEWSLETTER_IMAP_* and SSL_CERT_FILE, so
the code under test verifies the certificate the ordinary way).
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.tls import ThrowawayCA

DOVECOT = "/usr/sbin/dovecot"
USERNAME = "bounces@example.org"
PASSWORD = "imap-Passw0rd-for-tests!"
START_SECONDS = 20.0


@dataclass
class DovecotServer:
    """A running Dovecot; see the module docstring."""

    directory: Path
    port: int
    certificates: ThrowawayCA
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    username: str = USERNAME
    password: str = PASSWORD

    @property
    def log_path(self) -> Path:
        return self.directory / "dovecot.log"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificates.ca_path))

    def client(self) -> imaplib.IMAP4_SSL:
        imap = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.ssl_context(), timeout=30)
        imap.login(self.username, self.password)
        return imap

    def append(self, folder: str, raw: bytes) -> None:
        imap = self.client()
        try:
            if folder != "INBOX":
                imap.create(folder)
            status, data = imap.append(folder, None, None, raw)
            assert status == "OK", data
        finally:
            imap.logout()

    def messages(self, folder: str) -> list[bytes]:
        """The messages in `folder` (none if it does not exist), read without marking them seen."""
        imap = self.client()
        try:
            status, _ = imap.select(folder, readonly=True)
            if status != "OK":
                return []
            _, data = imap.uid("SEARCH", "ALL")
            found = []
            for uid in (data[0] or b"").split():
                _, fetched = imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                found += [bytes(p[1]) for p in fetched if isinstance(p, tuple)]
            return found
        finally:
            imap.logout()

    def seen_flags(self, folder: str) -> list[bool]:
        imap = self.client()
        try:
            imap.select(folder, readonly=True)
            _, data = imap.uid("SEARCH", "ALL")
            flags = []
            for uid in (data[0] or b"").split():
                _, fetched = imap.uid("FETCH", uid.decode(), "(FLAGS)")
                flags.append(b"\\Seen" in b" ".join(x for x in fetched if isinstance(x, bytes)))
            return flags
        finally:
            imap.logout()

    def configure(self, monkeypatch: pytest.MonkeyPatch, project_dir: Path) -> None:
        """Point a project at this server, the way a team would set it up."""
        settings = project_dir / "newsletter.yaml"
        settings.write_text(
            settings.read_text(encoding="utf-8")
            + "\ninbox:\n  imap:\n"
            + f"    port: {self.port}\n    folder: INBOX\n    processed_folder: Processed\n",
            encoding="utf-8",
        )
        monkeypatch.setenv("NEWSLETTER_IMAP_HOST", self.host)
        monkeypatch.setenv("NEWSLETTER_IMAP_USERNAME", self.username)
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", self.password)
        # OpenSSL's default trust store honours SSL_CERT_FILE: the code under test
        # verifies with ssl.create_default_context() exactly as in production.
        monkeypatch.setenv("SSL_CERT_FILE", str(self.certificates.ca_path))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accounts() -> tuple[str, str, int, int]:
    """(internal user, login user, mail uid, mail gid): Dovecot's own users when run as root."""
    if os.geteuid() == 0:
        try:
            internal = pwd.getpwnam("dovecot")
            pwd.getpwnam("dovenull")
        except KeyError:
            pytest.fail(
                "Dovecot's system users (dovecot, dovenull) are missing: install Dovecot with "
                "`apt-get install -y dovecot-imapd`",
                pytrace=False,
            )
        return "dovecot", "dovenull", internal.pw_uid, internal.pw_gid
    me = pwd.getpwuid(os.geteuid())
    return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid


def _configuration(directory: Path, port: int, certs: ThrowawayCA) -> str:
    internal, login, uid, gid = _accounts()
    return f"""
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
info_log_path = {directory}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{certs.cert_path}
ssl_key = <{certs.key_path}
auth_mechanisms = plain
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = {min(uid, 1)}
first_valid_gid = {min(gid, 1)}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {directory}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={directory}/home/%n
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


def _wait_until_listening(server: DovecotServer) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with socket.create_connection((server.host, server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    output = server.process.stdout.read().decode(errors="replace") if server.process.stdout else ""
    pytest.fail(f"Dovecot did not start on port {server.port}:\n{output}\n{log}", pytrace=False)


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A fresh Dovecot with an empty mailbox for `bounces@example.org`; fails if not installed."""
    if not Path(DOVECOT).exists() and shutil.which("dovecot") is None:
        pytest.fail(
            "Dovecot is not installed: the inbox IMAP tests need it. "
            "Install it with `apt-get install -y dovecot-imapd`.",
            pytrace=False,
        )
    executable = DOVECOT if Path(DOVECOT).exists() else str(shutil.which("dovecot"))
    # Not pytest's tmp_path: Dovecot's unprivileged processes must be able to reach it.
    directory = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    try:
        directory.chmod(0o755)
        _, _, uid, gid = _accounts()
        for name in ("run", "state", "home"):
            (directory / name).mkdir()
        os.chown(directory / "home", uid, gid)
        certificates = ThrowawayCA(directory)
        (directory / "users").write_text(f"{USERNAME}:{{PLAIN}}{PASSWORD}::::::\n")
        port = _free_port()
        config = directory / "dovecot.conf"
        config.write_text(_configuration(directory, port, certificates))
        process = subprocess.Popen(
            [executable, "-F", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = DovecotServer(directory, port, certificates, process)
        try:
            _wait_until_listening(server)
            yield server
        finally:
            # Killed outright, with all its children (its own session): a graceful stop
            # waits about a second for its processes, and nothing of it is kept.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
