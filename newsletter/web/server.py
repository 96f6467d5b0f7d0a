"""The HTTP server under `newsletter serve`: waitress, with limits sized to face the internet.

`serve` is meant to run on 127.0.0.1 behind nginx or Caddy, which terminate
HTTPS and hold the slow clients; it must also survive being exposed directly
(a proxy misconfigured, a scanner on the port). docs/serve.md explains the
numbers; in short:

- `connection_limit` (waitress's default is 100): every open connection costs
  a file descriptor and a little memory, nothing more, because waitress reads
  requests asynchronously and only hands complete ones to its threads. 100
  idle connections (a scanner, or keep-alive clients) used to be enough to
  make waitress stop accepting, so `/healthz` timed out. The limit is kept
  well under the usual 1,024 file descriptors of a service.
- `channel_timeout`: an idle connection is closed after this many seconds,
  so idle connections cannot pile up to the limit for long.
- `max_request_body_size`: a webhook body can hold a bounce's raw message;
  anything bigger is refused (413) before the application sees it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import waitress

from newsletter.core.errors import NewsletterError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 4
DEFAULT_CONNECTION_LIMIT = 800
DEFAULT_CHANNEL_TIMEOUT_SECONDS = 30
# Webhook bodies can hold a bounce's raw message; form posts are tiny.
MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServerOptions:
    """Where and how waitress listens."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int = DEFAULT_THREADS
    connection_limit: int = DEFAULT_CONNECTION_LIMIT
    channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT_SECONDS


def run_server(
    app: Any, options: ServerOptions, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve the WSGI `app` with waitress until SIGINT or SIGTERM; `on_ready` gets the base URL."""
    try:
        server: Any = waitress.create_server(
            app,
            host=options.host,
            port=options.port,
            threads=options.threads,
            connection_limit=options.connection_limit,
            channel_timeout=options.channel_timeout,
            ident="newsletter",
            max_request_body_size=MAX_BODY_BYTES,
            asyncore_use_poll=True,
        )
    except OSError as error:
        raise NewsletterError(
            f"cannot listen on {options.host}:{options.port} ({error.strerror or error})"
        ) from None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        host = server.effective_host
        base = (
            f"http://[{host}]:{server.effective_port}"
            if ":" in host
            else (f"http://{host}:{server.effective_port}")
        )
        if on_ready:
            on_ready(base)
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        # Let requests in flight finish (waitress waits a few seconds for its threads).
        server.close()
        signal.signal(signal.SIGTERM, previous)
