"""The studio's pages: Jinja2 templates with the GOV.UK Design System's markup, and their headers.

Templates and static files live in this package (templates/, static/), so an
installed wheel carries them. Static files are served from a fixed list read
at start: a request never names a file on disk.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from werkzeug.wrappers import Response

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
# An email in the preview frame: its own inline styles, no script at all (the frame is sandboxed too).
EMAIL_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


def common_headers(policy: str = PAGE_POLICY) -> dict[str, str]:
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN" if policy is EMAIL_POLICY else "DENY",
        "X-Robots-Tag": "noindex, nofollow",
    }


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


def load_static() -> dict[str, StaticFile]:
    """Every file under static/, by its path there, read once."""
    found = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if path.suffix == ".js":
                kind = "text/javascript"
            found[path.relative_to(STATIC_DIR).as_posix()] = StaticFile(path.read_bytes(), kind)
    return found


class Pages:
    """Renders the studio's templates into responses carrying the studio's headers."""

    def __init__(self, csrf_token: str) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["csrf_token"] = csrf_token
        self.env.filters["plural"] = lambda n, word: f"{n} {word}{'' if n == 1 else 's'}"

    def html(self, template: str, /, **values: Any) -> str:
        return self.env.get_template(template).render(**values)

    def page(self, template: str, code: int = 200, /, **values: Any) -> Response:
        return Response(
            self.html(template, **values),
            status=code,
            content_type="text/html; charset=utf-8",
            headers=common_headers(),
        )

    def problem(self, code: int, title: str, message: str) -> Response:
        return self.page("problem.html.j2", code, title=title, message=message)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(value),
        status=status,
        content_type="application/json",
        headers=common_headers(),
    )


def redirect(location: str) -> Response:
    """303 See Other: after a POST, the browser GETs the next page (no resubmission on reload)."""
    return Response("", status=303, headers={**common_headers(), "Location": location})
