"""The local preview server: see an issue exactly as recipients will, while editing it.

`start_preview` serves, on 127.0.0.1 only, a page showing the subject, sender,
preheader, each variant (with its recipient count) at desktop or phone width,
the plain-text part and the headers. The page polls `/state`, a fingerprint of
the issue, settings, catalogue, templates and recipient files, and reloads
when it changes. Broken content is shown on the page as `path:line:column:
message` instead of stopping the server. The server answers only its own
fixed routes; any other path (including `..` tricks) gets 404, because it
never maps a request to a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from newsletter.audience import Variant
from newsletter.content import Issue
from newsletter.errors import Problem
from newsletter.message import PersonalisedEmail, build_message
from newsletter.project import Project, open_project
from newsletter.render import Renderer, sample_variants
from newsletter.render_errors import render_error_problems
from newsletter.templating import make_environment

HOST = "127.0.0.1"
PAGE_TEMPLATE = "web/preview/page.html.j2"
WIDTHS = {"desktop": 680, "phone": 375}


@dataclass(frozen=True)
class PreviewVariant:
    """One variant as previewed: its sample recipient's email and message headers."""

    variant: Variant
    recipients: int
    sample_address: str
    email: PersonalisedEmail
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PreviewState:
    """What the page shows for one version of the files: the variants, or the problems."""

    version: str
    issue: Issue | None
    from_line: str
    variants: tuple[PreviewVariant, ...]
    problems: tuple[Problem, ...]

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
        previews = []
        for variant, recipient, count in sample_variants(project, issue):
            email = renderer.personalise(variant, recipient)
            message = build_message(settings, issue, recipient, email)
            headers = tuple((name, str(value)) for name, value in message.items())
            previews.append(PreviewVariant(variant, count, recipient.email, email, headers))
        from_line = f"{settings.from_name} <{settings.from_address}>"
        return PreviewState(version, issue, from_line, tuple(previews), ())
    except Exception as error:  # the page shows any failure instead of crashing
        return PreviewState(version, None, "", (), tuple(render_error_problems(error, issue_path)))


class PreviewServer(ThreadingHTTPServer):
    """The preview's HTTP server; `url` is where to point a browser, `stop()` ends it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, project: Project, issue_path: Path, port: int = 0) -> None:
        self.project = project
        self.issue_path = issue_path
        self._lock = threading.Lock()
        self._state: PreviewState | None = None
        self._thread: threading.Thread | None = None
        super().__init__((HOST, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

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
        env = make_environment(self.project.template_dirs)
        return env.get_template(PAGE_TEMPLATE).render(
            state=state,
            chosen=chosen,
            width=width if width in WIDTHS else "desktop",
            widths=WIDTHS,
            root_dir=self.project.root_dir,
        )

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
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()


def start_preview(project: Project, issue: str | Path, port: int = 0) -> PreviewServer:
    """Start the preview of `issue` (a path or id) on 127.0.0.1 in a background thread."""
    return PreviewServer(project, project.resolve_issue_path(issue), port).start()


def make_preview(project: Project, issue: str | Path, port: int = 0) -> PreviewServer:
    """The preview server, not yet serving: call `serve_forever()` (the CLI does)."""
    return PreviewServer(project, project.resolve_issue_path(issue), port)


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer
    server_version = "newsletter-preview"

    def log_message(self, format: str, *args: object) -> None:
        pass  # a preview left open would otherwise print a line per poll

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        if not self._host_is_local():
            self._send(HTTPStatus.FORBIDDEN, "text/plain", "This preview only answers 127.0.0.1.\n")
            return
        if not self.path.startswith("/"):
            self._send(HTTPStatus.NOT_FOUND, "text/plain", "Not found.\n", head)
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        route = parts.path
        if route == "/":
            body = self.server.page(
                query.get("variant", [None])[0], query.get("width", ["desktop"])[0]
            )
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", body, head)
        elif route == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, "text/plain", "", head)
        elif route == "/state":
            body = json.dumps({"version": self.server.current_version()})
            self._send(HTTPStatus.OK, "application/json", body, head)
        elif route.startswith("/email/") and route.endswith((".html", ".txt")):
            name = route.removeprefix("/email/")
            key, _, kind = name.rpartition(".")
            found = self.server.state().find(key) if "/" not in key else None
            if found is None:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", "No such variant.\n", head)
            elif kind == "html":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", found.email.html, head)
            else:
                self._send(HTTPStatus.OK, "text/plain; charset=utf-8", found.email.text, head)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", "Not found.\n", head)

    def do_POST(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", "The preview is read-only.\n")

    do_PUT = do_DELETE = do_POST

    def _host_is_local(self) -> bool:
        # Refusing other Host names stops a web page using DNS rebinding to read the preview.
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost", "")

    def _send(self, status: HTTPStatus, content_type: str, body: str, head: bool = False) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(data)
