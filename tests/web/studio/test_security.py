"""Who may drive the studio: forged requests change nothing, and nothing secret reaches a page.

Each forged request below is one a hostile web page (or another user on the
computer) could make; the issue file, the do-not-send list and the outbox
must be exactly as they were afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.project import SAMPLE_ISSUE
from tests.web.studio.conftest import StudioProcess

ISSUE_URL = f"/issues/{SAMPLE_ISSUE}"


def _snapshot(studio: StudioProcess) -> dict[str, bytes]:
    root = studio.project_dir
    files = [studio.issue_path(), root / "recipients" / "suppressed.csv"]
    found = {str(p): p.read_bytes() for p in files}
    outbox = root / "outbox"
    found["outbox"] = str(sorted(outbox.rglob("*")) if outbox.exists() else []).encode()
    return found


def _plain_client() -> requests.Session:
    client = requests.Session()
    client.trust_env = False
    return client


def test_the_printed_link_signs_in_with_a_strict_cookie_and_drops_the_token(
    studio: StudioProcess,
) -> None:
    client = _plain_client()
    assert client.get(studio.base_url + "/").status_code == 403
    response = client.get(studio.start_url, allow_redirects=False)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get(studio.base_url + "/")
    assert page.status_code == 200
    assert SAMPLE_ISSUE in page.text
    # The session token is never written into a page, not even the one it opens.
    for path in ("/", ISSUE_URL, "/suppressed", f"{ISSUE_URL}/send"):
        assert studio.token not in client.get(studio.base_url + path).text


def test_a_wrong_token_or_no_cookie_is_refused(studio: StudioProcess) -> None:
    client = _plain_client()
    other = "y" if studio.token.startswith("x") else "x"  # never the token itself
    forged = studio.start_url.replace(studio.token, other + studio.token[1:])
    response = client.get(forged, allow_redirects=False)
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers


def test_forged_posts_change_nothing(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client, ISSUE_URL)
    before = _snapshot(studio)
    save = {"csrf_token": csrf, "title": "Forged", "section_count": "0", "action": "save"}
    add = {"csrf_token": csrf, "address": "forged@example.org", "reason": "forged"}
    attempts = {
        "no CSRF token": (client, {"Origin": studio.origin}, {**save, "csrf_token": ""}),
        "wrong CSRF token": (client, {"Origin": studio.origin}, {**save, "csrf_token": "0" * 64}),
        "another site's Origin": (client, {"Origin": "https://evil.example"}, save),
        "no Origin or Referer": (client, {"Origin": ""}, save),
        "no session cookie": (_plain_client(), {"Origin": studio.origin}, save),
    }
    for name, (who, headers, data) in attempts.items():
        for path, body in (
            (ISSUE_URL, data),
            ("/suppressed", {**add, **{"csrf_token": data["csrf_token"]}}),
        ):
            response = who.post(studio.base_url + path, data=body, headers=headers)
            assert response.status_code == 403, (name, path, response.status_code)
    # DNS rebinding: the same request under another host name.
    rebound = client.post(
        studio.base_url + ISSUE_URL, data=save, headers={"Host": "evil.example:80"}
    )
    assert rebound.status_code == 421
    assert client.get(studio.base_url + "/", headers={"Host": "evil.example"}).status_code == 421
    assert _snapshot(studio) == before


def test_paths_stay_in_the_project_and_links_out_are_refused(
    studio: StudioProcess, tmp_path: Path
) -> None:
    client = studio.session()
    for path in ("/issues/..%2F..%2Fnewsletter", "/issues/%2E%2E", "/static/../newsletter.yaml"):
        response = client.get(studio.base_url + path)
        assert response.status_code == 404, path
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(studio.issue_path().read_text(encoding="utf-8"), encoding="utf-8")
    (studio.project_dir / "issues" / "linked-in.yaml").symlink_to(outside)
    response = client.get(studio.base_url + "/issues/linked-in")
    assert response.status_code == 400
    assert "outside the project" in response.text
    assert "Traceback" not in response.text


def test_an_oversized_post_is_refused_unread(studio: StudioProcess) -> None:
    client = studio.session()
    csrf = studio.csrf(client, ISSUE_URL)
    before = _snapshot(studio)
    response = client.post(
        studio.base_url + ISSUE_URL,
        data={"csrf_token": csrf, "intro": "x" * (5 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert _snapshot(studio) == before


def test_only_loopback_addresses_are_listened_on(project_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "newsletter",
            "--root",
            str(project_dir),
            "studio",
            "--host",
            "0.0.0.0",
            "--no-browser",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert result.returncode != 0
    assert "signing in does not exist yet" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("header", ["Content-Security-Policy", "X-Frame-Options"])
def test_pages_carry_protective_headers(studio: StudioProcess, header: str) -> None:
    response = studio.session().get(studio.base_url + ISSUE_URL)
    assert response.headers[header]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
