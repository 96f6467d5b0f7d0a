"""Start the studio: listen on 127.0.0.1, print the link with its key, open the browser.

It runs under waitress through `web.server.run_server`, the same server and
stop handling (Ctrl-C, SIGTERM) as `newsletter serve`. Only a loopback
address may be listened on: there is no signing in yet, so anyone who could
reach the port could send the newsletter.
"""

from __future__ import annotations

import socket
import webbrowser
from collections.abc import Callable
from pathlib import Path

from newsletter.core.errors import NewsletterError
from newsletter.web.server import ServerOptions, run_server
from newsletter.web.studio.app import StudioApp
from newsletter.web.studio.security import StudioSecurity, is_loopback_host

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
THREADS = 8  # a page, its preview frames and the progress poll at once


def free_port(host: str, port: int) -> int:
    """`port`, or with 0 a free one chosen now (the token's URL must name the real port)."""
    if port:
        return port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])


def run_studio(
    root_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    open_browser: bool = True,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the studio for the project at `root_dir` until Ctrl-C or SIGTERM."""
    if not is_loopback_host(host):
        raise NewsletterError(
            f"the studio listens only on 127.0.0.1 (not {host}): signing in does not exist "
            "yet, so anyone who could reach it could send the newsletter"
        )
    port = free_port(host, port)
    security = StudioSecurity.new(port)
    app = StudioApp(root_dir, security)

    def ready(base_url: str) -> None:
        url = security.start_url("127.0.0.1" if host != "localhost" else host)
        say(f"newsletter studio: open {url} (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)

    run_server(app, ServerOptions(host, port, THREADS), on_ready=ready)
