"""premailer is imported without requests, and requests still works afterwards.

premailer imports requests only to fetch external stylesheets, which we never
allow; `render/inlining` hands its import a stand-in so a render does not pay
for requests and urllib3. What a person would notice if that went wrong: CSS
not inlined, or a later Notify or Graph send failing to find requests. Each
check runs in a fresh interpreter, as this one has imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]

INLINE = """
import json, sys
{before}
from newsletter.render.inlining import inline_css
html = inline_css(
    '<html><head><style>p {{ color: red }}</style></head>'
    '<body><p><a href="issues/may.html">May</a></p></body></html>',
    'https://news.example.org/',
)
requests_loaded_by_render = 'urllib3' in sys.modules
import requests
import premailer.premailer
print(json.dumps({{
    'html': html,
    'requests_loaded_by_render': requests_loaded_by_render,
    'session': requests.Session.__module__,
    'one_requests': sys.modules['requests'] is requests,
    'premailer_sees': premailer.premailer.requests.codes.ok,
}}))
"""


def run_inline(before: str = "") -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", INLINE.format(before=before)],
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_inlining_does_not_load_requests_and_requests_works_after() -> None:
    result = run_inline()
    assert '<p style="color:red">' in str(result["html"])
    assert 'href="https://news.example.org/issues/may.html"' in str(result["html"])
    assert result["requests_loaded_by_render"] is False
    assert result["session"] == "requests.sessions"
    assert result["one_requests"] is True
    assert result["premailer_sees"] == 200  # the stand-in, if ever asked, is the real thing


def test_inlining_after_requests_was_imported_uses_it() -> None:
    result = run_inline(before="import requests")
    assert '<p style="color:red">' in str(result["html"])
    assert result["one_requests"] is True
    assert result["premailer_sees"] == 200
