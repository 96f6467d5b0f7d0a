"""`newsletter serve` over real HTTP: a subprocess on 127.0.0.1, driven like mail clients and people.

A GET never unsubscribes; the RFC 8058 POST does, at once, answered 200 with
no redirect; forged or altered links change nothing; 200 people leaving at
the same moment are all recorded, once each.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.validate import validator

import lxml.html
import pytest

from newsletter.audience.lists import Recipient
from newsletter.audience.suppression import add_suppression
from newsletter.core.project import open_project
from newsletter.ledger.list_events import read_list_events
from newsletter.render.links import RESUBSCRIBE, UNSUBSCRIBE, address_token, unsubscribe_https_url
from newsletter.render.message import PersonalisedEmail, build_message
from newsletter.web.serve import app_from_environment
from tests.support.project import UNSUBSCRIBE_SECRET, enable_one_click
from tests.support.serve import ISSUE_ID, ServeProcess

LIST_ID = "news-update.childrens-mars.example.org"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def rows(server: ServeProcess) -> list[dict[str, str]]:
    with server.suppressed_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def row_for(server: ServeProcess, address: str) -> list[dict[str, str]]:
    return [r for r in rows(server) if r["email"].lower() == address.lower()]


def forms(html: str) -> list[lxml.html.FormElement]:
    return list(lxml.html.fromstring(html).forms)


def with_query(url: str, **changes: str | None) -> str:
    """`url` with some query parameters replaced (or removed, with None)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_a_get_shows_one_button_and_never_unsubscribes(serve_server: ServeProcess) -> None:
    before = serve_server.suppressed_path.read_bytes()
    link = serve_server.link("jo.bloggs@example.org")
    client = serve_server.session()

    # Link scanners fetch (and re-fetch, and HEAD) every link before anyone clicks.
    for _ in range(3):
        page = client.get(link, allow_redirects=False, timeout=10)
        assert page.status_code == 200
    assert client.head(link, timeout=10).status_code == 200

    assert serve_server.suppressed_path.read_bytes() == before
    assert read_list_events(serve_server.ledger_path) == []
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "jo.bloggs@example.org" in page.text
    (form,) = forms(page.text)
    assert form.method.upper() == "POST"
    assert serve_server.local(form.action) == link  # the same signed URL
    assert dict(form.form_values()) == ONE_CLICK
    assert len(form.xpath(".//button")) == 1


def test_the_one_click_post_unsubscribes_at_once_with_200_and_no_redirect(
    serve_server: ServeProcess,
) -> None:
    link = serve_server.link("Jo.Bloggs@Example.org")
    client = serve_server.session()

    answer = client.post(link, data=ONE_CLICK, allow_redirects=False, timeout=10)

    assert answer.status_code == 200
    assert "Location" not in answer.headers
    (row,) = row_for(serve_server, "jo.bloggs@example.org")
    assert row["email"] == "Jo.Bloggs@Example.org"
    assert row["reason"] == "one-click"
    (event,) = read_list_events(serve_server.ledger_path)
    assert (event.address, event.action, event.reason, event.source) == (
        "Jo.Bloggs@Example.org",
        "suppressed",
        "one-click",
        "web",
    )
    assert (event.issue_id, event.list_id, event.changed) == (ISSUE_ID, LIST_ID, True)

    # A mail client that repeats the POST changes nothing more.
    again = client.post(link, data=ONE_CLICK, allow_redirects=False, timeout=10)
    assert again.status_code == 200
    assert len(row_for(serve_server, "jo.bloggs@example.org")) == 1
    assert [e.changed for e in read_list_events(serve_server.ledger_path)] == [True, False]


def test_multipart_form_data_is_accepted_too(serve_server: ServeProcess) -> None:
    # RFC 8058 allows either encoding of the List-Unsubscribe=One-Click body.
    link = serve_server.link("sam@example.org")
    fields = {"List-Unsubscribe": (None, "One-Click")}
    answer = serve_server.session().post(link, files=fields, allow_redirects=False, timeout=10)
    assert answer.status_code == 200
    assert row_for(serve_server, "sam@example.org")[0]["reason"] == "one-click"


def test_the_link_in_a_real_message_header_works(serve_server: ServeProcess) -> None:
    project = open_project(serve_server.project_dir)
    issue = project.load_issue(ISSUE_ID)
    person = Recipient("O'Neill+news@example.org", "Pat O'Neill")
    message = build_message(
        project.settings, issue, person, PersonalisedEmail("s", "<p>h</p>", "t")
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    targets = [t.strip().strip("<>") for t in str(message["List-Unsubscribe"]).split(",")]
    https = next(t for t in targets if t.startswith("https:"))

    # What Gmail or Apple Mail does with the headers: POST the body to the URL.
    answer = serve_server.session().post(
        serve_server.local(https), data=ONE_CLICK, allow_redirects=False, timeout=10
    )

    assert answer.status_code == 200
    assert row_for(serve_server, "o'neill+news@example.org")[0]["reason"] == "one-click"


def _forgeries(link: str) -> dict[str, str]:
    token = parse_qs(urlsplit(link).query)["token"][0]
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    other_secret = hmac.new(
        b"guessed-secret", f"unsubscribe\0{LIST_ID}\0jo@example.org".encode(), hashlib.sha256
    ).hexdigest()[:32]
    return {
        "altered token": with_query(link, token=flipped),
        "truncated token": with_query(link, token=token[:16]),
        "another person's address": with_query(link, address="sam@example.org"),
        "another secret": with_query(link, token=other_secret),
        "another list": with_query(
            link,
            token=address_token(UNSUBSCRIBE_SECRET, UNSUBSCRIBE, "other.list", "jo@example.org"),
        ),
        "the undo token": with_query(
            link, token=address_token(UNSUBSCRIBE_SECRET, RESUBSCRIBE, LIST_ID, "jo@example.org")
        ),
        "non-ASCII token": with_query(link, token="é" * 32),
    }


@pytest.mark.parametrize(
    "forgery",
    [
        "altered token",
        "truncated token",
        "another person's address",
        "another secret",
        "another list",
        "the undo token",
        "non-ASCII token",
    ],
)
def test_forged_or_altered_links_are_refused_and_change_nothing(
    serve_server: ServeProcess, forgery: str
) -> None:
    before = serve_server.suppressed_path.read_bytes()
    url = _forgeries(serve_server.link("jo@example.org"))[forgery]
    client = serve_server.session()

    shown = client.get(url, timeout=10)
    posted = client.post(url, data=ONE_CLICK, allow_redirects=False, timeout=10)

    assert shown.status_code == 403 and posted.status_code == 403
    assert "This link is not valid" in posted.text
    assert forms(posted.text) == []  # no button to press on a bad link
    assert "mailto:unsubscribe@example.org" in posted.text  # the route that always works
    assert serve_server.suppressed_path.read_bytes() == before
    assert read_list_events(serve_server.ledger_path) == []


@pytest.mark.parametrize("missing", ["token", "address"])
def test_an_incomplete_link_is_a_400_and_changes_nothing(
    serve_server: ServeProcess, missing: str
) -> None:
    before = serve_server.suppressed_path.read_bytes()
    url = with_query(serve_server.link("jo@example.org"), **{missing: None})
    answer = serve_server.session().post(url, data=ONE_CLICK, timeout=10)
    assert answer.status_code == 400
    assert serve_server.suppressed_path.read_bytes() == before


@pytest.mark.parametrize(
    "body", [{}, {"List-Unsubscribe": "one-click"}, {"List-Unsubscribe": "Two-Clicks"}]
)
def test_a_post_without_the_one_click_body_changes_nothing(
    serve_server: ServeProcess, body: dict[str, str]
) -> None:
    before = serve_server.suppressed_path.read_bytes()
    answer = serve_server.session().post(serve_server.link("jo@example.org"), data=body, timeout=10)
    assert answer.status_code == 400
    assert serve_server.suppressed_path.read_bytes() == before
    assert read_list_events(serve_server.ledger_path) == []


def test_the_undo_button_resubscribes_and_its_link_alone_does_not(
    serve_server: ServeProcess,
) -> None:
    client = serve_server.session()
    done = client.post(serve_server.link("jo@example.org"), data=ONE_CLICK, timeout=10)
    (undo,) = forms(done.text)
    undo_url = serve_server.local(undo.action)

    assert client.get(undo_url, timeout=10).status_code == 200  # a scanner's GET
    assert row_for(serve_server, "jo@example.org")

    answer = client.post(undo_url, data=dict(undo.form_values()), allow_redirects=False, timeout=10)

    assert answer.status_code == 200
    assert "subscribed again" in answer.text
    assert row_for(serve_server, "jo@example.org") == []
    assert [(e.action, e.changed) for e in read_list_events(serve_server.ledger_path)] == [
        ("suppressed", True),
        ("resubscribed", True),
    ]


def test_the_undo_never_lifts_a_bounce_or_complaint(serve_server: ServeProcess) -> None:
    # Already suppressed as a hard bounce: the one-click changes nothing and
    # offers no undo, and a signed undo link cannot take the row away either.
    add_suppression(serve_server.suppressed_path, "gone@example.org", "hard-bounce", "2023-06-01")
    client = serve_server.session()
    done = client.post(serve_server.link("gone@example.org"), data=ONE_CLICK, timeout=10)
    assert done.status_code == 200
    assert forms(done.text) == []

    token = address_token(UNSUBSCRIBE_SECRET, RESUBSCRIBE, LIST_ID, "gone@example.org")
    undo = f"{serve_server.base_url}/unsubscribe/resubscribe?" + urlencode(
        {"address": "gone@example.org", "token": token}
    )
    refused = client.post(undo, data={"confirm": "resubscribe"}, timeout=10)

    assert refused.status_code == 409
    assert row_for(serve_server, "gone@example.org")[0]["reason"] == "hard-bounce"


def test_200_people_leaving_at_once_are_each_recorded_exactly_once(
    serve_server: ServeProcess,
) -> None:
    addresses = [f"reader{n}@example.org" for n in range(200)]
    links = serve_server.links(addresses)
    before = len(rows(serve_server))

    def leave(address: str) -> int:
        client = serve_server.session()
        return client.post(links[address], data=ONE_CLICK, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(leave, addresses))

    assert statuses == [200] * 200
    after = rows(serve_server)
    assert len(after) == before + 200
    emails = [r["email"] for r in after]
    assert all(emails.count(address) == 1 for address in addresses)
    events = read_list_events(serve_server.ledger_path)
    assert sorted(e.address for e in events if e.changed) == sorted(addresses)
    leftovers = [p.name for p in serve_server.suppressed_path.parent.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_health_unknown_paths_and_methods(serve_server: ServeProcess) -> None:
    client = serve_server.session()
    assert client.get(f"{serve_server.base_url}/healthz", timeout=10).text == "ok\n"
    assert (
        client.get(f"{serve_server.base_url}/unsubscribe/../etc/passwd", timeout=10).status_code
        == 404
    )
    assert client.get(f"{serve_server.base_url}/preview", timeout=10).status_code == 404
    put = client.put(serve_server.link("jo@example.org"), data=ONE_CLICK, timeout=10)
    assert put.status_code == 405
    assert client.get(f"{serve_server.base_url}/webhooks/postmark", timeout=10).status_code == 405


def _serve_once(project_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_to_start_with_a_url_but_no_secret(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_one_click(project_dir, monkeypatch)
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_UNSUBSCRIBE_SECRET"}
    finished = _serve_once(project_dir, env)
    assert finished.returncode == 1
    assert "NEWSLETTER_UNSUBSCRIBE_SECRET is not" in finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout


def test_half_configured_webhook_credentials_are_refused(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_one_click(project_dir, monkeypatch)
    env = {**os.environ, "NEWSLETTER_MAILJET_WEBHOOK_USERNAME": "someone"}
    finished = _serve_once(project_dir, env)
    assert finished.returncode == 1
    assert "NEWSLETTER_MAILJET_WEBHOOK_PASSWORD is not set" in finished.stderr


def test_a_bad_request_never_shows_a_traceback(serve_server: ServeProcess) -> None:
    client = serve_server.session()
    huge = client.post(
        serve_server.link("jo@example.org"),
        data={"List-Unsubscribe": "One-Click", "padding": "x" * 100_000},
        timeout=10,
    )
    assert huge.status_code == 413
    assert "Traceback" not in huge.text
    assert row_for(serve_server, "jo@example.org") == []


def test_the_app_is_plain_wsgi_under_another_server(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stdlib's reference server with its WSGI conformance checker in front.
    enable_one_click(project_dir, monkeypatch)
    monkeypatch.setenv("NEWSLETTER_ROOT", str(project_dir))
    app = validator(app_from_environment())
    with make_server("127.0.0.1", 0, app, handler_class=_QuietHandler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            project = open_project(project_dir)
            issue = project.load_issue(ISSUE_ID)
            public = unsubscribe_https_url(project.settings, issue, "jo@example.org")
            assert public is not None
            local = public.replace(
                "https://news.example.org", f"http://127.0.0.1:{httpd.server_port}"
            )
            client = ServeProcess.session()
            assert client.get(local, timeout=10).status_code == 200
            assert client.post(local, data=ONE_CLICK, timeout=10).status_code == 200
        finally:
            httpd.shutdown()
            thread.join(timeout=10)
    reasons = {r["email"]: r["reason"] for r in csv.DictReader(open_text(project_dir))}
    assert reasons["jo@example.org"] == "one-click"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def open_text(project_dir: Path) -> list[str]:
    return (project_dir / "recipients" / "suppressed.csv").read_text(encoding="utf-8").splitlines()
