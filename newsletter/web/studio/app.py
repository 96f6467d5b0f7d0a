"""The studio's WSGI application: security first, then one small view per page.

Every request passes the checks of `security.py` before any view runs: the
Host header, the session cookie (or the start token, swapped for the
cookie), and for a POST the Origin and CSRF token. Views (edit_views,
send_views, list_views) are functions of (studio, request, **url values)
that call the library and render a page; a NewsletterError becomes a page
saying what is wrong, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from newsletter.content.new_issue import check_issue_id
from newsletter.core.bounds import project_file
from newsletter.core.errors import ContentError, NewsletterError
from newsletter.core.project import Project, open_project
from newsletter.web.studio import edit_views, import_views, list_views, send_views
from newsletter.web.studio.checks import DraftChecker
from newsletter.web.studio.jobs import SendJobs
from newsletter.web.studio.pages import Pages, StaticFile, common_headers, load_static
from newsletter.web.studio.security import StudioSecurity

log = logging.getLogger("newsletter.web.studio")

# An issue with sixty sections is a few hundred kilobytes of form; an upload is a Word file.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_FORM_BYTES = 2 * 1024 * 1024
MAX_FORM_PARTS = 5000

View = Callable[..., Response]


class StudioRequest(Request):
    max_content_length = MAX_BODY_BYTES
    max_form_memory_size = MAX_FORM_BYTES
    max_form_parts = MAX_FORM_PARTS


@dataclass(frozen=True)
class Studio:
    """What every view needs: the project's folder, the pages and the shared helpers."""

    root_dir: Path
    security: StudioSecurity
    pages: Pages
    checker: DraftChecker
    jobs: SendJobs

    def project(self) -> Project:
        """The project as its files are now (they change under the studio)."""
        return open_project(self.root_dir)

    def issue_path(self, project: Project, issue_id: str) -> Path:
        """The issue file with this id, inside the project; NotFound for anything else."""
        try:
            check_issue_id(issue_id)
        except NewsletterError:
            raise NotFound() from None
        for path in project.issue_paths():
            if path.stem == issue_id:
                return project_file(path, project.root_dir)
        raise NotFound()


ROUTES: dict[str, tuple[str, list[str], View]] = {
    "/": ("home", ["GET"], edit_views.home),
    "/issues/new": ("new", ["GET", "POST"], edit_views.new_issue_page),
    "/issues/import": ("import", ["GET", "POST"], import_views.import_page),
    "/issues/<issue_id>": ("edit", ["GET", "POST"], edit_views.edit),
    "/issues/<issue_id>/check": ("check", ["POST"], edit_views.check),
    "/issues/<issue_id>/test": ("test", ["GET", "POST"], send_views.test_copy),
    "/issues/<issue_id>/approve": ("approve", ["GET", "POST"], send_views.approve),
    "/issues/<issue_id>/send": ("send", ["GET", "POST"], send_views.send),
    "/issues/<issue_id>/progress": ("progress", ["GET"], send_views.progress),
    "/issues/<issue_id>/progress.json": ("progress_json", ["GET"], send_views.progress_json),
    "/issues/<issue_id>/stop": ("stop", ["POST"], send_views.stop),
    "/issues/<issue_id>/report": ("report", ["GET"], list_views.report),
    "/issues/<issue_id>/report.csv": ("report_csv", ["GET"], list_views.report_csv),
    "/preview/<render_id>/<variant>.html": ("email", ["GET"], edit_views.email_frame),
    "/catalogue/new": ("catalogue", ["GET", "POST"], edit_views.catalogue_entry),
    "/suppressed": ("suppressed", ["GET", "POST"], list_views.suppressed),
    "/suppressed/resubscribe": ("resubscribe", ["GET", "POST"], list_views.resubscribe),
}


class StudioApp:
    """The WSGI application: call it with (environ, start_response)."""

    def __init__(self, root_dir: Path, security: StudioSecurity) -> None:
        open_project(root_dir)  # a broken newsletter.yaml stops the start, with its message
        self.security = security
        self.studio = Studio(
            root_dir,
            security,
            Pages(security.csrf_token),
            DraftChecker(root_dir),
            SendJobs(root_dir),
        )
        self.static: dict[str, StaticFile] = load_static()
        rules = [
            Rule(path, endpoint=name, methods=methods)
            for path, (name, methods, _) in ROUTES.items()
        ]
        rules.append(Rule("/static/<path:name>", endpoint="static", methods=["GET"]))
        self.views = {name: view for name, _, view in ROUTES.values()}
        self.routes = Map(rules, strict_slashes=False, merge_slashes=False)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = StudioRequest(environ)
        try:
            response = self._guarded(request)
        except HTTPException as error:
            response = self._http_error(error)
        except ContentError as error:
            lines = "; ".join(str(p) for p in error.problems if p.is_error)
            response = self.studio.pages.problem(400, "The files have errors", lines)
        except NewsletterError as error:
            response = self.studio.pages.problem(400, "That could not be done", str(error))
        except Exception:
            log.exception("studio: the request could not be handled")
            response = self.studio.pages.problem(
                500, "Sorry, something went wrong", "Nothing more was changed. Try again."
            )
        result: Iterable[bytes] = response(environ, start_response)
        return result

    def _guarded(self, request: StudioRequest) -> Response:
        security = self.security
        refusal = security.host_refusal(request)
        if refusal is not None:
            return _plain(refusal.status, refusal.message)
        if security.token_in_url(request):
            # The first visit: the token moves into the cookie and out of the address bar.
            target = request.path or "/"
            headers = {
                **common_headers(),
                "Location": target,
                "Set-Cookie": security.cookie_header(),
            }
            return Response("", status=303, headers=headers)
        if not security.signed_in(request):
            return self.studio.pages.problem(
                403,
                "Open the studio from its link",
                "Use the link `newsletter studio` printed when it started (it holds a "
                "one-time key). If you closed it, stop the studio and start it again.",
            )
        refusal = security.post_refusal(request)
        if refusal is not None:
            return self.studio.pages.problem(refusal.status, "Nothing was changed", refusal.message)
        adapter = self.routes.bind_to_environ(request.environ)
        endpoint, values = adapter.match()
        if endpoint == "static":
            return self._static(str(values["name"]))
        return self.views[str(endpoint)](self.studio, request, **values)

    def _static(self, name: str) -> Response:
        found = self.static.get(name)
        if found is None:
            raise NotFound()
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"}
        return Response(found.body, content_type=found.content_type, headers=headers)

    def _http_error(self, error: HTTPException) -> Response:
        status = error.code or 500
        names = {404: "Page not found", 405: "Not allowed here", 413: "That is too big"}
        message = {
            404: "There is nothing at this address. Go back to the list of issues.",
            405: "This page does not take that kind of request.",
            413: "The form or file sent was bigger than the studio accepts.",
        }.get(status, error.description or "")
        return self.studio.pages.problem(status, names.get(status, "Not possible"), message)


def _plain(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")
