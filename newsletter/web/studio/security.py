"""Who may use the studio, and which requests it believes: a per-start token, CSRF, Host, Origin.

The studio can send the News Update to everyone, so a web page the team
happens to visit must not be able to drive it. Four checks, as OWASP's CSRF
and DNS-rebinding guidance and Jupyter's token login do it:

- A secret token, new at each start, is in the URL the command prints. The
  first visit swaps it for a cookie (HttpOnly, SameSite=Strict) and redirects
  to the same URL without it, so it leaves the address bar and history.
  A request without the cookie (or the token) is refused.
- The Host header must name this studio by its loopback name and port
  (`web.preview.host_status`): a rebinding page's requests carry its own name.
- Every POST must come from this studio's own pages: its Origin (or, lacking
  one, its Referer) must be this studio, and it must carry the CSRF token,
  an HMAC of the session token that only the studio's own pages hold.
- Nothing secret is ever written into a page except the CSRF token, which is
  useless without the HttpOnly cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.wrappers import Request

from newsletter.web.preview import LOOPBACK_NAMES, host_status

COOKIE_PREFIX = "newsletter_studio_"  # + the port: cookies are shared by every port of a host
TOKEN_PARAMETER = "token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the HTTP status and one sentence for the page."""

    status: int
    message: str


@dataclass(frozen=True)
class StudioSecurity:
    """The secrets of one studio run and the checks every request goes through."""

    session_token: str
    port: int

    @classmethod
    def new(cls, port: int) -> StudioSecurity:
        """A fresh token for a studio that has just started listening on `port`."""
        return cls(secrets.token_urlsafe(32), port)

    @property
    def csrf_token(self) -> str:
        """The token forms carry: derived from the session token, so it needs no storage."""
        digest = hmac.new(self.session_token.encode(), b"studio csrf", hashlib.sha256)
        return digest.hexdigest()

    def start_url(self, host: str = "127.0.0.1") -> str:
        """The one URL to open: it carries the token."""
        return f"http://{host}:{self.port}/?{TOKEN_PARAMETER}={self.session_token}"

    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{name}:{self.port}" for name in LOOPBACK_NAMES)

    def host_refusal(self, request: Request) -> Refusal | None:
        """A refusal unless the Host header names this studio (DNS rebinding)."""
        status = host_status(request.headers.getlist("Host"), self.port)
        if status is None:
            return None
        return Refusal(
            int(status),
            f"The studio only answers requests for http://127.0.0.1:{self.port}/ "
            f"or http://localhost:{self.port}/.",
        )

    def token_in_url(self, request: Request) -> bool:
        """The URL carries the right token (the first visit, from the printed link)."""
        given = request.args.get(TOKEN_PARAMETER, "")
        return bool(given) and secrets.compare_digest(given, self.session_token)

    def signed_in(self, request: Request) -> bool:
        given = request.cookies.get(self.cookie_name, "")
        return bool(given) and secrets.compare_digest(given, self.session_token)

    def post_refusal(self, request: Request) -> Refusal | None:
        """For a POST: refused unless it comes from our own page and carries the CSRF token."""
        if request.method in SAFE_METHODS:
            return None
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            referer = urlsplit(request.headers.get("Referer", ""))
            origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
        if origin not in self.origins():
            return Refusal(403, "This form was not sent from the studio's own page.")
        given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
        if not given or not secrets.compare_digest(given, self.csrf_token):
            return Refusal(
                403,
                "This form has expired (the studio was restarted since the page was "
                "loaded). Go back, reload the page and try again.",
            )
        return None

    @property
    def cookie_name(self) -> str:
        return f"{COOKIE_PREFIX}{self.port}"

    def cookie_header(self) -> str:
        """The Set-Cookie value that signs this browser in for the studio's lifetime."""
        return f"{self.cookie_name}={self.session_token}; Path=/; HttpOnly; SameSite=Strict"


def is_loopback_host(host: str) -> bool:
    """Only these may be listened on: signing in does not exist yet."""
    return host.strip("[]") in {"127.0.0.1", "localhost", "::1"}
