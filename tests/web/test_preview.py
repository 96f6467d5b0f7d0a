"""The preview server over real HTTP on 127.0.0.1: routes, errors, refusals, change detection."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest

from newsletter.core.project import Project
from newsletter.web.preview import PreviewServer, start_preview

ISSUE_ID = "2023-05-panel-reports"


@pytest.fixture
def server(project: Project) -> Iterator[PreviewServer]:
    running = start_preview(project, ISSUE_ID, port=0)
    try:
        yield running
    finally:
        running.stop()


def get(
    server: PreviewServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """A raw request, so the path reaches the server exactly as written (no normalising)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=headers is not None and "Host" in headers)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        connection.close()


def test_binds_to_loopback_only_and_prints_a_local_url(server):
    assert server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/"


def test_page_shows_subject_from_preheader_variants_text_and_headers(server, project):
    status, content_type, body = get(server, "/")
    assert status == 200 and content_type.startswith("text/html")
    page = lxml.html.document_fromstring(body)
    issue = project.load_issue(ISSUE_ID)
    assert page.get_element_by_id("subject").text_content() == issue.subject
    assert "comms@example.org" in page.get_element_by_id("from").text_content()
    assert page.get_element_by_id("preheader").text_content() == issue.preheader
    variants = [" ".join(a.text_content().split()) for a in page.find_class("variant-link")]
    assert variants == [
        "All sections (44 recipients)",
        "Without: Bruising in non-mobile infants (23 recipients)",
    ]
    assert (
        "For information and consideration:" in page.get_element_by_id("text-part").text_content()
    )
    header_names = [th.text_content() for th in page.get_element_by_id("headers").iter("th")]
    assert {"From", "To", "Subject", "List-Unsubscribe", "Message-ID"} <= set(header_names)
    widths = [b.get("data-width") for b in page.xpath("//button[@data-width]")]
    assert widths == ["desktop", "phone"]


def test_each_variant_serves_its_html_and_text(server):
    status, content_type, html = get(server, "/email/all-sections.html")
    assert status == 200 and content_type.startswith("text/html")
    assert "Bruising in non-mobile infants</h2>" in html
    status, _, other = get(server, "/email/without-bruising-in-non-mobile-infants.html")
    assert status == 200 and "Bruising in non-mobile infants</h2>" not in other
    status, content_type, text = get(server, "/email/all-sections.txt")
    assert status == 200 and content_type.startswith("text/plain")
    assert "BRUISING IN NON-MOBILE INFANTS" in text
    assert get(server, "/email/no-such-variant.html")[0] == 404


def test_an_email_asked_for_while_the_content_is_broken_says_so_instead_of_404(server, project):
    # A page loaded a moment before an editor's save still asks for its variant's email;
    # a 404 there shows as a browser console error on a page that is about to reload.
    issue_path = project.paths.issues_dir / f"{ISSUE_ID}.yaml"
    original = issue_path.read_text(encoding="utf-8")
    issue_path.write_text(original.replace("date: 2023-05-15", "date: 2023-13-45"), "utf-8")
    status, content_type, body = get(server, "/email/all-sections.html")
    assert (status, content_type.split(";")[0]) == (200, "text/plain")
    assert "content has errors" in body


@pytest.mark.parametrize(
    "path",
    [
        "/../newsletter.yaml",
        "/email/../../newsletter.yaml",
        "/%2e%2e/newsletter.yaml",
        "/email/%2e%2e%2f%2e%2e%2fnewsletter.yaml",
        "/email/..%2f..%2frecipients/lists/health.csv",
        "//etc/passwd",
        "/etc/passwd",
        "/issues/2023-05-panel-reports.yaml",
        "/templates/email/newsletter.html.j2",
        "http://127.0.0.1/newsletter.yaml",
    ],
)
def test_requests_outside_the_previews_routes_are_refused(server, path):
    status, _, body = get(server, path)
    # 421: http.client sends `Host: 127.0.0.1` (port 80) for the absolute URL.
    assert status == (421 if path.startswith("http:") else 404)
    assert "organisation:" not in body and "list_id" not in body and "root:" not in body


def test_requests_for_another_host_name_are_refused(server):
    status, _, _ = get(server, "/", headers={"Host": "attacker.example:80"})
    assert status == 421  # Misdirected Request: tests/web/test_preview_server.py has more cases


def test_writes_are_refused(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/", body=b"x")
    assert connection.getresponse().status == 405
    connection.close()


def test_state_changes_when_the_issue_or_a_template_is_saved(server, project_dir: Path):
    def version() -> str:
        return json.loads(get(server, "/state")[2])["version"]

    first = version()
    assert version() == first
    issue_path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    issue_path.write_text(issue_path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    second = version()
    assert second != first
    template = project_dir / "templates" / "email" / "_footer.html.j2"
    template.write_text(template.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert version() != second


def test_a_content_error_is_shown_on_the_page_located(server, project_dir: Path):
    issue_path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    text = issue_path.read_text(encoding="utf-8")
    issue_path.write_text(text.replace("reply_to: ideas@example.org", "reply_to: not-an-address"))
    status, _, body = get(server, "/")
    assert status == 200
    page = lxml.html.document_fromstring(body)
    problems = [li.text_content() for li in page.get_element_by_id("problems").iter("li")]
    line = text.splitlines().index("reply_to: ideas@example.org") + 1
    assert any(p.startswith(f"{issue_path}:{line}:") and "not-an-address" in p for p in problems)
    # Fixing it brings the email back; the server kept running throughout.
    issue_path.write_text(text, encoding="utf-8")
    status, _, body = get(server, "/")
    assert status == 200 and 'id="subject"' in body


def test_a_broken_template_is_shown_on_the_page_not_a_crash(server, project_dir: Path):
    template = project_dir / "templates" / "email" / "_intro.html.j2"
    template.write_text("{% if %}\n", encoding="utf-8")
    status, _, body = get(server, "/")
    assert status == 200
    assert f"{template}:1:1: template error" in lxml.html.document_fromstring(body).text_content()


def test_preview_command_prints_its_url_and_serves_until_stopped(project_dir: Path):
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), "preview", ISSUE_ID,
         "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:  # fmt: skip
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith(f"Previewing {ISSUE_ID} at http://127.0.0.1:"), line
            url = line.split(" at ", 1)[1].split()[0]
            port = int(url.rstrip("/").rsplit(":", 1)[1])
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.status == 200
            assert b"News Update, May 2023" in response.read()
            connection.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
