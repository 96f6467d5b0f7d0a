"""The local preview server: see an issue exactly as recipients will, while editing it.

`start_preview` serves, on 127.0.0.1 only, a page showing the subject, sender,
preheader, each variant (with its recipient count) at desktop or phone width,
the plain-text part and the headers; when the transport sends its own
version of the body (GOV.UK Notify), that version too, as recipients get it. The page polls `/state`, a fingerprint of
the issue, settings, catalogue, templates and recipient files, and reloads
when it changes. Broken content is shown on the page as `path:line:column:
message` instead of stopping the server. The server answers only its own
fixed routes; any other path (including `..` tricks) gets 404, because it
never maps a request to a file.

It runs on the same stack as `newsletter serve`: a WSGI application
(`PreviewApp`, werkzeug routing) under waitress. It is built to stay up
while a browser (or a script) hammers it: a listen backlog big enough for
hundreds of simultaneous page loads, idle connections closed after a
timeout so a half-sent request cannot hold a thread for ever, and a Host
header check that answers only requests addressed to this preview by its
loopback name and port, so a web page cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import waitress
from jinja2 import Environment
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from newsletter.audience.lists import Variant
from newsletter.content.issue import Issue
from newsletter.core.errors import NewsletterError, Problem
from newsletter.core.project import Project, open_project
from newsletter.render.message import PersonalisedEmail, build_message
from newsletter.render.problems import render_error_problems
from newsletter.render.templating import make_environment
from newsletter.render.variants import Renderer, sample_variants
from newsletter.transports.lookup import provider_body

HOST = "127.0.0.1"
PAGE_TEMPLATE = "web/preview/page.html.j2"
WIDTHS = {"desktop": 680, "phone": 375}
# How long a connection may sit without sending its request before it is closed.
CONNECTION_TIMEOUT_SECONDS = 30.0
THREADS = 8
# Names a browser on this computer may use for the preview (with its port).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class PreviewVariant:
    """One variant as previewed: its sample recipient's email and message headers."""

    variant: Variant
    recipients: int
    sample_address: str
    email: PersonalisedEmail
    headers: tuple[tuple[str, str], ...]
    provider_body: str | None = None  # the transport's own version (Notify's markdown)


EMAIL_UNAVAILABLE = (
    "The content has errors right now; the page shows them and reloads when fixed.\n"
)


@dataclass(frozen=True)
class PreviewState:
    """What the page shows for one version of the files: the variants, or the problems."""

    version: str
    issue: Issue | None
    from_line: str
    variants: tuple[PreviewVariant, ...]
    problems: tuple[Problem, ...]
    provider_label: str | None = None  # what the transport's own version is called

    def find(self, key: str | None) -> PreviewVariant | None:
        for item in self.variants:
            if item.variant.key == key:
                return item
        return self.variants[0] if self.variants and key is None else None


def _watched_files(project: Project, issue_path: Path) -> Iterable[Path]:
    yield project.root_dir / "newsletter.yaml"
    yield issue_path
    yield project.catalogue_path
    for directory in (*project.template_dirs, project.recipients_dir):
        if directory.is_dir():
            yield from sorted(p for p in directory.rglob("*") if p.is_file())


def fingerprint(project: Project, issue_path: Path) -> str:
    """Changes whenever a file the preview depends on is saved, created or removed."""
    digest = hashlib.sha256()
    for path in _watched_files(project, issue_path):
        try:
            stat = path.stat()
        except FileNotFoundError:
            digest.update(f"{path}:missing".encode())
            continue
        digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode())
    # Content too, so two saves within one timestamp tick still count as a change.
    with contextlib.suppress(OSError):
        digest.update(issue_path.read_bytes())
    return digest.hexdigest()[:16]


def build_state(project: Project, issue_path: Path, version: str) -> PreviewState:
    """Render every variant for its first recipient; any error becomes a located problem."""
    try:
        project = open_project(project.root_dir)
        issue = project.load_issue(issue_path)
        settings = project.settings
        renderer = Renderer(project, issue)
        own_body = provider_body(settings, issue)
        previews = []
        for variant, recipient, count in sample_variants(project, issue):
            email = renderer.personalise(variant, recipient)
            message = build_message(settings, issue, recipient, email)
            headers = tuple((name, str(value)) for name, value in message.items())
            own = own_body.render(variant, recipient) if own_body is not None else None
            previews.append(PreviewVariant(variant, count, recipient.email, email, headers, own))
        from_line = f"{settings.from_name} <{settings.from_address}>"
        label = own_body.label if own_body is not None else None
        return PreviewState(version, issue, from_line, tuple(previews), (), label)
    except Exception as error:  # the page shows any failure instead of crashing
        return PreviewState(version, None, "", (), tuple(render_error_problems(error, issue_path)))


class PreviewServer:
    """The preview's HTTP server; `url` is where to point a browser, `stop()` ends it.

    waitress, as `newsletter serve` uses, answering the WSGI application
    `PreviewApp`. It listens with a backlog big enough for hundreds of
    simultaneous page loads, and closes connections idle for longer than
    `connection_timeout` (checked every quarter of it, at least each second).
    """

    def __init__(
        self,
        project: Project,
        issue_path: Path,
        port: int = 0,
        *,
        connection_timeout: float = CONNECTION_TIMEOUT_SECONDS,
    ) -> None:
        self.project = project
        self.issue_path = issue_path
        self.connection_timeout = connection_timeout
        self._lock = threading.Lock()
        self._state: PreviewState | None = None
        self._thread: threading.Thread | None = None
        self._env: Environment | None = None
        self._stopping = threading.Event()
        self._map: dict[int, Any] = {}
        try:
            self._server: Any = waitress.create_server(
                PreviewApp(self),
                map=self._map,
                host=HOST,
                port=port,
                threads=THREADS,
                backlog=1024,
                connection_limit=1000,
                channel_timeout=max(1, round(connection_timeout)),
                cleanup_interval=max(1, round(connection_timeout / 4)),
                ident="newsletter-preview",
                asyncore_use_poll=True,
            )
        except OSError as error:
            raise NewsletterError(_bind_failure(port, error)) from None

    @property
    def server_address(self) -> tuple[str, int]:
        """The address actually listened on (as socketserver's servers say it)."""
        return str(self._server.effective_host), self.port

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def current_version(self) -> str:
        return fingerprint(self.project, self.issue_path)

    def state(self) -> PreviewState:
        """The rendered state for the files as they are now (re-rendered only on change)."""
        version = self.current_version()
        with self._lock:
            if self._state is None or self._state.version != version:
                self._state = build_state(self.project, self.issue_path, version)
            return self._state

    def page(self, variant_key: str | None, width: str) -> str:
        state = self.state()
        chosen = state.find(variant_key)
        # One environment for every page load: Jinja then compiles the page once
        # (and again only when a template file changes), not on each request.
        if self._env is None:
            self._env = make_environment(self.project.template_dirs)
        return self._env.get_template(PAGE_TEMPLATE).render(
            state=state,
            chosen=chosen,
            width=width if width in WIDTHS else "desktop",
            widths=WIDTHS,
            root_dir=self.project.root_dir,
        )

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Answer requests until `stop()` (from another thread) or Ctrl-C."""
        try:
            while not self._stopping.is_set() and self._map:
                self._server.asyncore.loop(
                    timeout=poll_interval, map=self._map, use_poll=True, count=1
                )
        finally:
            self._close()

    def start(self) -> PreviewServer:
        """Serve in a background thread (for tests and embedding)."""
        # A short poll interval lets stop() return promptly.
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="preview", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close()

    def server_close(self) -> None:
        """Release the port (after `serve_forever` has returned)."""
        self._close()

    def _close(self) -> None:
        for channel in list(self._map.values()):
            channel.close()
        self._server.task_dispatcher.shutdown()


def _bind_failure(port: int, error: OSError) -> str:
    """What to tell the user when the preview cannot listen on `port`."""
    if error.errno == errno.EADDRINUSE:
        problem = f"port {port} is already in use (another preview, or another program)"
    elif error.errno == errno.EACCES:
        problem = f"port {port} needs administrator rights"
    else:
        problem = f"cannot listen on {HOST}:{port} ({error.strerror})"
    return f"{problem}; choose another with --port, or --port 0 to pick a free one"


def start_preview(
    project: Project,
    issue: str | Path,
    port: int = 0,
    *,
    connection_timeout: float = CONNECTION_TIMEOUT_SECONDS,
) -> PreviewServer:
    """Start the preview of `issue` (a path or id) on 127.0.0.1 in a background thread."""
    path = project.resolve_issue_path(issue)
    return PreviewServer(project, path, port, connection_timeout=connection_timeout).start()


def make_preview(project: Project, issue: str | Path, port: int = 0) -> PreviewServer:
    """The preview server, not yet serving: call `serve_forever()` (the CLI does).

    Raises NewsletterError, in one line, when the port is busy or not allowed.
    """
    return PreviewServer(project, project.resolve_issue_path(issue), port)


def host_status(host_values: list[str], port: int) -> HTTPStatus | None:
    """None when the Host header names this preview; otherwise the status to refuse with.

    Only `127.0.0.1:PORT`, `localhost:PORT` and `[::1]:PORT` are ours. A missing,
    repeated or malformed Host (`127.0.0.1:8031@evil.test` names evil.test) is
    400 Bad Request, as RFC 9112 section 3.2 requires; a well-formed Host naming
    another server, as a DNS-rebinding page would send, is 421 Misdirected Request.
    """
    if len(host_values) != 1:
        return HTTPStatus.BAD_REQUEST
    value = host_values[0].strip().lower()
    ours = {f"{name}:{port}" for name in LOOPBACK_NAMES}
    if port == 80:  # a browser leaves out the default port
        ours.update(LOOPBACK_NAMES)
    if value in ours:
        return None
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return HTTPStatus.BAD_REQUEST
    try:
        authority = urlsplit(f"//{value}")
        authority.port  # noqa: B018 (reading it validates the port)
    except ValueError:
        return HTTPStatus.BAD_REQUEST
    if (
        authority.username is not None
        or not authority.hostname
        or authority.path
        or authority.query
        or authority.fragment
    ):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.MISDIRECTED_REQUEST


class PreviewApp:
    """The preview's WSGI application: fixed routes only, never a path mapped to a file."""

    def __init__(self, server: PreviewServer) -> None:
        self.server = server
        self.routes = Map(
            [
                Rule("/", endpoint="page"),
                Rule("/favicon.ico", endpoint="favicon"),
                Rule("/state", endpoint="state"),
                Rule("/email/<name>", endpoint="email"),
            ],
            strict_slashes=False,
            merge_slashes=False,
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self._answer(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        result: Iterable[bytes] = response(environ, start_response)
        return result

    def _answer(self, request: Request) -> Response:
        port = self.server.port
        host = request.environ.get("HTTP_HOST")
        status = host_status([host] if host is not None else [], port)
        if status is not None:
            return _text(
                status,
                "This preview only answers requests for "
                f"http://{HOST}:{port}/ or http://localhost:{port}/.\n",
            )
        if request.method not in ("GET", "HEAD"):
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, "The preview is read-only.\n")
        try:
            endpoint, values = self.routes.bind_to_environ(request.environ).match()
        except HTTPException:
            return _text(HTTPStatus.NOT_FOUND, "Not found.\n")
        if endpoint == "page":
            body = self.server.page(
                request.args.get("variant"), request.args.get("width", "desktop")
            )
            return Response(body, content_type="text/html; charset=utf-8")
        if endpoint == "favicon":
            return Response("", status=HTTPStatus.NO_CONTENT, content_type="text/plain")
        if endpoint == "state":
            version = json.dumps({"version": self.server.current_version()})
            return Response(version, content_type="application/json")
        return self._email(str(values["name"]))

    def _email(self, name: str) -> Response:
        key, _, kind = name.rpartition(".")
        if kind not in ("html", "txt"):
            return _text(HTTPStatus.NOT_FOUND, "Not found.\n")
        state = self.server.state()
        found = state.find(key)
        if found is None and state.problems:
            # The files changed under a page already showing this variant (an editor
            # saving mid-way): the page reloads with the problems in a moment.
            return _text(HTTPStatus.OK, EMAIL_UNAVAILABLE, "text/plain; charset=utf-8")
        if found is None:
            return _text(HTTPStatus.NOT_FOUND, "No such variant.\n")
        if kind == "html":
            return Response(found.email.html, content_type="text/html; charset=utf-8")
        return Response(found.email.text, content_type="text/plain; charset=utf-8")


def _text(status: int, body: str, content_type: str = "text/plain") -> Response:
    return Response(body, status=int(status), content_type=content_type)
