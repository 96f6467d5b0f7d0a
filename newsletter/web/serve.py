"""`newsletter serve`: the web application behind `unsubscribe.url`, and provider webhooks.

A WSGI application (`ServeApp`), so any WSGI server can run it; `run_server`
runs it under waitress, a production pure-Python server, normally on
127.0.0.1 behind a reverse proxy that terminates HTTPS (README: "When people leave the list"). It
shares nothing with the preview server: links come from `links.py`, writes
go through `suppression.py`, history goes to `list_events.py`.

Routes, where P is the path of `unsubscribe.url` (e.g. `/unsubscribe`):
- `GET P?address=..&issue=..&token=..`: a confirmation page with one button.
  A GET never changes anything: Defender Safe Links, Mimecast and other
  scanners fetch every link in a message before anyone clicks.
- `POST P?...` with the body `List-Unsubscribe=One-Click` (RFC 8058, sent by
  mail clients and by the page's button): the token is checked (HMAC over
  address and list, constant-time compare), the address is added to
  suppressed.csv at once with reason `one-click`, and the answer is 200, no
  redirect, with a page offering the undo.
- `GET/POST P/resubscribe?address=..&token=..`: the undo, signed for that
  purpose alone; GET asks, POST puts the address back, but only while its
  row is still the web's own `one-click` (never a bounce or complaint).
- `POST /webhooks/postmark`, `POST /webhooks/mailjet`: provider events
  (`webhooks.py`), behind HTTP basic auth; 404 unless credentials are set.
- `GET /healthz`: 200 `ok`, for the proxy or a monitor.

A missing address or token is a 400 and a token that does not verify a 403;
either way nothing changes. Pages carry a strict Content-Security-Policy
(only their own style block), no-store, no-referrer (the URL holds the
token) and noindex.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import waitress
from jinja2 import Environment
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from newsletter.audience.suppression import (
    add_suppression,
    remove_suppression,
    suppression_reason,
)
from newsletter.core.errors import ConfigError, NewsletterError
from newsletter.core.project import Project, open_project
from newsletter.core.settings import UNSUBSCRIBE_SECRET_ENV, Secret, Settings
from newsletter.core.signing import (
    RESUBSCRIBE,
    UNSUBSCRIBE,
    address_token,
    address_token_is_valid,
)
from newsletter.inbox.webhooks import PROVIDERS, READERS, WebhookPayloadError
from newsletter.ledger.list_events import ListEvent, prepare_list_events, record_list_event
from newsletter.render.links import mailto
from newsletter.render.templating import make_environment

log = logging.getLogger("newsletter.web.serve")

ONE_CLICK_REASON = "one-click"
ONE_CLICK_BODY = ("List-Unsubscribe", "One-Click")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 4
# Webhook bodies can hold a bounce's raw message; form posts are tiny.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_FORM_BYTES = 8 * 1024
TEMPLATE_DIR = "web/unsubscribe"
# The issue id in a link is not signed: it is only kept in the history, if it looks like one.
_ISSUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def webhook_env(provider: str, part: str) -> str:
    """`NEWSLETTER_POSTMARK_WEBHOOK_USERNAME` and the like."""
    return f"NEWSLETTER_{provider.upper()}_WEBHOOK_{part}"


@dataclass(frozen=True)
class BasicCredentials:
    """The user name and password a provider puts in the webhook URL (basic auth)."""

    username: str
    password: Secret

    def accept(self, username: str | None, password: str | None) -> bool:
        """Both match, compared in constant time (both are always compared)."""
        user_ok = secrets.compare_digest((username or "").encode(), self.username.encode())
        pass_ok = secrets.compare_digest((password or "").encode(), self.password.reveal().encode())
        return user_ok and pass_ok


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ServeOptions:
    """What `serve` needs beyond the project: the link secret and webhook credentials."""

    secret: Secret | None
    webhooks: Mapping[str, BasicCredentials] = field(default_factory=dict)
    clock: Callable[[], datetime] = _utc_now


def serve_options_from_environment(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> ServeOptions:
    """The link secret (from Settings) and each provider's webhook credentials (from env)."""
    env = os.environ if environ is None else environ
    webhooks: dict[str, BasicCredentials] = {}
    for provider in PROVIDERS:
        user_var, password_var = (
            webhook_env(provider, "USERNAME"),
            webhook_env(provider, "PASSWORD"),
        )
        username, password = env.get(user_var, "").strip(), env.get(password_var, "")
        if bool(username) != bool(password):
            missing = password_var if username else user_var
            raise ConfigError(
                f"{missing} is not set: the {provider} webhook needs both "
                f"{user_var} and {password_var} (or neither, to turn it off)"
            )
        if username:
            webhooks[provider] = BasicCredentials(username, Secret(password))
    return ServeOptions(secret=settings.unsubscribe_secret, webhooks=webhooks)


class _Request(Request):
    max_content_length = MAX_BODY_BYTES
    max_form_memory_size = MAX_FORM_BYTES
    max_form_parts = 20


@dataclass(frozen=True)
class _Link:
    """The verified parts of an unsubscribe or undo link."""

    address: str
    issue_id: str | None


class ServeApp:
    """The WSGI application: call it with (environ, start_response)."""

    def __init__(self, project: Project, options: ServeOptions) -> None:
        settings = project.settings
        if settings.unsubscribe_url and not options.secret:
            raise ConfigError(
                f"unsubscribe.url is set in {settings.settings_path} but "
                f"{UNSUBSCRIBE_SECRET_ENV} is not: set it to a long random value "
                "(the same one `send` and `dispatch` use) before serving"
            )
        self.project = project
        self.options = options
        self.settings = settings
        self.suppressed_path = project.paths.suppressed_path
        self.list_name = f"{settings.organisation} News Update"
        self._zone = settings.zone
        self.unsubscribe_path = _served_path(settings.unsubscribe_url)
        self.resubscribe_path = (
            self.unsubscribe_path.rstrip("/") + "/resubscribe" if self.unsubscribe_path else None
        )
        rules = [Rule("/healthz", endpoint="health", methods=["GET"])]
        if self.unsubscribe_path and self.resubscribe_path:
            methods = ["GET", "POST"]
            rules.append(Rule(self.unsubscribe_path, endpoint="unsubscribe", methods=methods))
            rules.append(Rule(self.resubscribe_path, endpoint="resubscribe", methods=methods))
        for provider in options.webhooks:
            rules.append(
                Rule(f"/webhooks/{provider}", endpoint=f"webhook:{provider}", methods=["POST"])
            )
        self.routes = Map(rules, strict_slashes=False, merge_slashes=False)
        self.templates: Environment = make_environment(project.template_dirs)
        prepare_list_events(settings.ledger_path)

    # -- WSGI ---------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = _Request(environ)
        try:
            response = self._dispatch(request)
        except HTTPException as error:
            response = self._http_error(error)
        except Exception:
            # Logged for the team (no secrets: the request is not logged); the
            # person gets a page, never a traceback.
            log.exception("serve: the request could not be handled")
            response = self._problem(
                500,
                "Sorry, something went wrong",
                "Your request could not be recorded, and nothing was changed.",
            )
        result: Iterable[bytes] = response(environ, start_response)
        return result

    def _dispatch(self, request: _Request) -> Response:
        adapter = self.routes.bind_to_environ(request.environ)
        endpoint, _ = adapter.match()
        if endpoint == "health":
            return Response("ok\n", content_type="text/plain; charset=utf-8")
        if endpoint in ("unsubscribe", "resubscribe"):
            # A form post here is a field or two: refuse anything bigger unread.
            request.max_content_length = MAX_FORM_BYTES
            if endpoint == "unsubscribe":
                return self._unsubscribe(request)
            return self._resubscribe(request)
        provider = str(endpoint).removeprefix("webhook:")
        return self._webhook(request, provider)

    # -- one-click unsubscribe ----------------------------------------------

    def _unsubscribe(self, request: _Request) -> Response:
        link = self._verified(request, UNSUBSCRIBE)
        if isinstance(link, Response):
            return link
        if request.method in ("GET", "HEAD"):
            return self._page("confirm", address=link.address, action=request.full_path)
        if request.form.get(ONE_CLICK_BODY[0]) != ONE_CLICK_BODY[1]:
            return self._problem(
                400,
                "This request was not understood",
                "An unsubscribe request must carry List-Unsubscribe=One-Click. "
                "Nothing was changed.",
            )
        now = self.options.clock()
        changed = add_suppression(
            self.suppressed_path, link.address, ONE_CLICK_REASON, now.astimezone(self._zone).date()
        )
        self._record(now, link, "suppressed", ONE_CLICK_REASON, "web", changed)
        log.info("one-click unsubscribe%s", "" if changed else " (already suppressed)")
        undo = None
        if suppression_reason(self.suppressed_path, link.address) == ONE_CLICK_REASON:
            undo = self._signed_path(self.resubscribe_path, RESUBSCRIBE, link)
        return self._page("unsubscribed", address=link.address, undo_action=undo)

    def _resubscribe(self, request: _Request) -> Response:
        link = self._verified(request, RESUBSCRIBE)
        if isinstance(link, Response):
            return link
        if request.method in ("GET", "HEAD"):
            return self._page("resubscribe", address=link.address, action=request.full_path)
        if request.form.get("confirm") != "resubscribe":
            return self._problem(400, "This request was not understood", "Nothing was changed.")
        now = self.options.clock()
        path = self.suppressed_path
        removed = remove_suppression(path, link.address, only_reason=ONE_CLICK_REASON)
        if not removed and suppression_reason(path, link.address) is not None:
            # Listed for another reason (a bounce, a complaint, the team's own
            # decision) since the one-click: only the team may undo that.
            return self._problem(
                409,
                "This address cannot be resubscribed here",
                # The reason stays private: it may be the team's own words.
                f"{link.address} is on our do-not-send list for another reason, so it was "
                "not changed. Email us to rejoin.",
                unsubscribe_help=False,
            )
        self._record(now, link, "resubscribed", ONE_CLICK_REASON, "web", removed)
        log.info("web resubscribe%s", "" if removed else " (was not suppressed)")
        return self._page("resubscribed", address=link.address)

    def _verified(self, request: _Request, purpose: str) -> _Link | Response:
        """The link's address if its token verifies; otherwise the 400/403 page."""
        address = request.args.get("address", "").strip()
        token = request.args.get("token", "").strip()
        if not address or not token:
            return self._problem(
                400,
                "This link is incomplete",
                "Part of the link is missing, perhaps cut off when it was copied. "
                "Nothing was changed.",
            )
        secret = self.options.secret
        assert secret is not None  # checked in __init__: no secret, no unsubscribe routes
        if not address_token_is_valid(
            secret.reveal(), purpose, self.settings.list_id, address, token
        ):
            return self._problem(
                403,
                "This link is not valid",
                "The link does not match any address on our list (it may have been "
                "changed or cut short). Nothing was changed.",
            )
        issue = request.args.get("issue", "")
        return _Link(address, issue if _ISSUE_ID.fullmatch(issue) else None)

    def _signed_path(self, path: str | None, purpose: str, link: _Link) -> str:
        assert path is not None and self.options.secret is not None
        token = address_token(
            self.options.secret.reveal(), purpose, self.settings.list_id, link.address
        )
        params = {"address": link.address, "token": token}
        if link.issue_id:
            params["issue"] = link.issue_id
        return f"{path}?{urlencode(params, quote_via=quote)}"

    def _record(
        self, now: datetime, link: _Link, action: str, reason: str, source: str, changed: bool
    ) -> None:
        record_list_event(
            self.settings.ledger_path,
            ListEvent(
                recorded_at=now,
                list_id=self.settings.list_id,
                address=link.address,
                action=action,
                reason=reason,
                source=source,
                issue_id=link.issue_id,
                changed=changed,
            ),
        )

    # -- provider webhooks --------------------------------------------------

    def _webhook(self, request: _Request, provider: str) -> Response:
        credentials = self.options.webhooks.get(provider)
        if credentials is None:
            raise NotFound()
        auth = request.authorization
        if (
            auth is None
            or auth.type != "basic"
            or not credentials.accept(auth.username, auth.password)
        ):
            return Response(
                "authentication required\n",
                status=401,
                content_type="text/plain; charset=utf-8",
                headers={"WWW-Authenticate": f'Basic realm="newsletter {provider} webhook"'},
            )
        try:
            payload = json.loads(request.get_data(cache=False))
            suppressions = READERS[provider](payload)
        except (ValueError, WebhookPayloadError) as error:
            message = str(error) if isinstance(error, WebhookPayloadError) else "not JSON"
            return Response(
                f"bad request: {message}\n", status=400, content_type="text/plain; charset=utf-8"
            )
        now = self.options.clock()
        changed_count = 0
        for item in suppressions:
            try:
                changed = add_suppression(
                    self.suppressed_path,
                    item.address,
                    item.reason,
                    now.astimezone(self._zone).date(),
                )
            except NewsletterError as error:
                # One odd address must not make the provider resend the whole batch forever.
                log.warning("%s webhook: an event was skipped: %s", provider, error)
                continue
            changed_count += changed
            self._record(
                now, _Link(item.address, None), "suppressed", item.reason, provider, changed
            )
        log.info(
            "%s webhook: %d event(s), %d new suppression(s)",
            provider,
            len(suppressions),
            changed_count,
        )
        body = json.dumps({"events": len(suppressions), "suppressed": changed_count})
        return Response(body + "\n", content_type="application/json")

    # -- pages --------------------------------------------------------------

    def _page(self, name: str, status: int = 200, **values: Any) -> Response:
        nonce = secrets.token_urlsafe(16)
        template = self.templates.get_template(f"{TEMPLATE_DIR}/{name}.html.j2")
        html = template.render(
            nonce=nonce,
            list_name=self.list_name,
            organisation=self.settings.organisation,
            help_address=self.settings.unsubscribe_mailto,
            help_mailto=mailto(self.settings.unsubscribe_mailto, f"{self.list_name}: unsubscribe"),
            **values,
        )
        response = Response(html, status=status, content_type="text/html; charset=utf-8")
        response.headers.update(_page_headers(nonce))
        return response

    def _problem(
        self, status: int, heading: str, message: str, *, unsubscribe_help: bool = True
    ) -> Response:
        return self._page(
            "problem",
            status=status,
            heading=heading,
            message=message,
            unsubscribe_help=unsubscribe_help,
        )

    def _http_error(self, error: HTTPException) -> Response:
        status = error.code or 500
        response = Response(
            f"{status} {error.name}\n", status=status, content_type="text/plain; charset=utf-8"
        )
        if status == 405:
            response.headers["Allow"] = ", ".join(getattr(error, "valid_methods", None) or [])
        return response


def _page_headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
        # The address and token are in the URL: never send them on to another site.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "X-Robots-Tag": "noindex, nofollow",
    }


def _served_path(unsubscribe_url: str | None) -> str | None:
    """The path the app answers on: the path of `unsubscribe.url` (the proxy passes it through)."""
    if not unsubscribe_url:
        return None
    path = urlsplit(unsubscribe_url).path or "/"
    if "<" in path or ">" in path:
        raise ConfigError(f"unsubscribe.url has a path `serve` cannot answer on: {path}")
    return path


def make_app(project: Project, options: ServeOptions) -> ServeApp:
    """The WSGI application for `project`."""
    return ServeApp(project, options)


def app_from_environment() -> ServeApp:
    """For other WSGI servers: the project at NEWSLETTER_ROOT (or here), secrets from the environment.

    e.g. `gunicorn 'newsletter.web.serve:app_from_environment()'`.
    """
    project = open_project(Path(os.environ.get("NEWSLETTER_ROOT", ".")))
    return make_app(project, serve_options_from_environment(project.settings))


@dataclass(frozen=True)
class ServerOptions:
    """Where and how waitress listens."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int = DEFAULT_THREADS


def run_server(
    app: ServeApp, options: ServerOptions, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve `app` with waitress until SIGINT or SIGTERM; `on_ready` gets the base URL."""
    try:
        server: Any = waitress.create_server(
            app,
            host=options.host,
            port=options.port,
            threads=options.threads,
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
