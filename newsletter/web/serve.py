"""`newsletter serve`: the web application behind `unsubscribe.url`, and provider webhooks.

A WSGI application (`ServeApp`), so any WSGI server can run it; `run_server`
runs it under waitress, a production pure-Python server, normally on
127.0.0.1 behind a reverse proxy that terminates HTTPS (docs/list-loop.md). It
shares nothing with the preview server: tokens are checked by
`core.signing`, writes go through `audience.suppression`, history goes to
`ledger.list_events`; the server's limits are `web.server`'s (docs/serve.md).

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
  JSON nested deeper than providers nest is a 400; an address that is not
  one is skipped; logs hold counts, never addresses.
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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from newsletter.audience.suppression import (
    add_suppressions,
    remove_suppression,
    suppression_reason,
)
from newsletter.core.errors import ConfigError, NewsletterError, WebhookPayloadError
from newsletter.core.project import Project, open_project
from newsletter.core.settings import UNSUBSCRIBE_SECRET_ENV
from newsletter.core.signing import (
    RESUBSCRIBE,
    UNSUBSCRIBE,
    address_token,
    address_token_is_valid,
)
from newsletter.inbox.webhooks import READERS
from newsletter.ledger.list_events import ListEvent, prepare_list_events, record_list_events
from newsletter.render.links import mailto
from newsletter.render.templating import make_environment
from newsletter.web.serve_options import ServeOptions
from newsletter.web.serve_options import (
    serve_options_from_environment as serve_options_from_environment,
)
from newsletter.web.server import DEFAULT_HOST as DEFAULT_HOST  # where `serve` listens
from newsletter.web.server import DEFAULT_PORT as DEFAULT_PORT
from newsletter.web.server import MAX_BODY_BYTES

log = logging.getLogger("newsletter.web.serve")

ONE_CLICK_REASON = "one-click"
ONE_CLICK_BODY = ("List-Unsubscribe", "One-Click")
MAX_FORM_BYTES = 8 * 1024
# Provider events are flat: an object, or a list of objects, of plain fields.
MAX_JSON_DEPTH = 16
TEMPLATE_DIR = "web/unsubscribe"
# The issue id in a link is not signed: it is only kept in the history, if it looks like one.
_ISSUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


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
        written = self._write_then_record(now, [(link, ONE_CLICK_REASON)], "web")
        if written is None:
            return self._problem(
                500,
                "Sorry, something went wrong",
                "Your request could not be recorded, and nothing was changed.",
            )
        log.info("one-click unsubscribe%s", "" if written else " (already suppressed)")
        return self._page("unsubscribed", address=link.address, undo_action=self._undo(link))

    def _write_then_record(
        self, now: datetime, leaving: list[tuple[_Link, str]], source: str
    ) -> int | None:
        """Add each address to suppressed.csv, then record each list event.

        Returns how many rows the file gained, or None when neither step took.
        Either one is enough for the address never to be mailed again (a send
        honours the file and the events), so once one has taken, a failure of
        the other is logged for the team, without the address, and the person
        is told the truth: they are unsubscribed.
        """
        day = now.astimezone(self._zone).date()
        wanted = [(link.address, reason) for link, reason in leaving]
        try:
            result = add_suppressions(self.suppressed_path, wanted, day)
            added, refused = {a.lower() for a in result.added}, {a for a, _ in result.refused}
            file_ok = True
        except NewsletterError as error:
            log.warning("%s: suppressed.csv was not changed: %s", source, type(error).__name__)
            added, refused, file_ok = set(), set(), False
        events = [
            ListEvent(
                now, self.settings.list_id, link.address, "suppressed", reason, source,
                link.issue_id, link.address.lower() in added,
            )
            for link, reason in leaving
            if link.address not in refused
        ]  # fmt: skip
        try:
            record_list_events(self.settings.ledger_path, events)
        except NewsletterError as error:
            log.warning("%s: the list event was not recorded: %s", source, type(error).__name__)
            if not file_ok:
                return None
        return len(added)

    def _undo(self, link: _Link) -> str | None:
        """The undo form's action, while the address's row is still the web's own."""
        try:
            reason = suppression_reason(self.suppressed_path, link.address)
        except NewsletterError:
            return None
        if reason != ONE_CLICK_REASON:
            return None
        return self._signed_path(self.resubscribe_path, RESUBSCRIBE, link)

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
        record_list_events(
            self.settings.ledger_path,
            [
                ListEvent(
                    now, self.settings.list_id, link.address, "resubscribed", ONE_CLICK_REASON,
                    "web", link.issue_id, removed,
                )
            ],
        )  # fmt: skip
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
        payload = _json_body(request.get_data(cache=False))
        try:
            if isinstance(payload, str):
                raise WebhookPayloadError(payload)
            suppressions = READERS[provider](payload)
        except WebhookPayloadError as error:
            return Response(
                f"bad request: {error}\n", status=400, content_type="text/plain; charset=utf-8"
            )
        leaving = [(_Link(item.address, None), item.reason) for item in suppressions]
        changed_count = self._write_then_record(self.options.clock(), leaving, provider)
        if changed_count is None:
            raise NewsletterError(f"{provider} webhook: nothing could be recorded")
        # Counts only: an address is personal data, and logs are kept and shipped.
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


def _json_body(data: bytes) -> object:
    """The parsed JSON, or why it is refused (a str): not JSON, or nested deeper than providers nest.

    The C parser recurses, so a body of 100,000 nested arrays raises
    RecursionError: that is a bad request too (400), never a 500 that the
    provider would retry for days.
    """
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON, or nested too deep"
    level: list[tuple[object, int]] = [(payload, 1)]
    while level:
        value, depth = level.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(value, dict):
            level.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            level.extend((child, depth + 1) for child in value)
    return payload


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
