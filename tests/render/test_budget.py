"""The size, safety and accessibility budget: each rule catches what it should."""

from __future__ import annotations

import pytest

from newsletter.render.budget import MAX_HTML_BYTES, check_email_html

PREHEADER = "Key challenges from national Panel reports."


def email(
    *,
    html_attrs: str = 'lang="en-GB" dir="ltr"',
    wrapper_attrs: str = 'lang="en-GB" dir="ltr"',
    head: str = "",
    title: str = "News Update",
    body: str = '<p><a href="https://example.org/report">Read the report: Out of Routine</a></p>',
    preheader: str = f'<div style="display: none; max-height: 0">{PREHEADER}</div>',
) -> str:
    return (
        f"<!DOCTYPE html><html {html_attrs}><head><meta charset='utf-8'>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{title}</title>{head}</head><body>"
        f"<div {wrapper_attrs}>{preheader}"
        f'<table role="presentation"><tr><td>{body}</td></tr></table></div></body></html>'
    )


def test_a_good_email_has_no_problems():
    assert check_email_html(email(), preheader=PREHEADER) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"html_attrs": 'lang="en-GB"'}, "<html> element needs `lang` and `dir`"),
        ({"wrapper_attrs": ""}, "inside <body> needs `lang` and `dir`"),
        ({"title": " "}, "<title> is missing or empty"),
        ({"head": '<link rel="stylesheet" href="https://cdn.example.org/x.css">'}, "external CSS"),
        ({"body": "<script>alert(1)</script><p>x</p>"}, "a script"),
        ({"body": '<img src="https://example.org/logo.png">'}, "have no `alt` text"),
        ({"body": "<table><tr><td>x</td></tr></table>"}, 'lack role="presentation"'),
        (
            {"body": '<a href="http://example.org/">The Panel site</a>'},
            "absolute https: or mailto:",
        ),
        ({"body": '<a href="/issues/1/">The May issue</a>'}, "absolute https: or mailto:"),
        ({"body": '<a href="https://example.org/">Click here</a>'}, "does not make sense"),
        ({"body": '<a href="https://example.org/">Read more…</a>'}, "does not make sense"),
        ({"body": '<a href="https://example.org/"> </a>'}, "has no text"),
        ({"preheader": ""}, "should be the hidden preheader"),
        ({"preheader": f"<div>{PREHEADER}</div>"}, "should be the hidden preheader"),
        ({"preheader": '<div style="display:none">Other</div>'}, "is not the preheader"),
    ],
)
def test_each_rule_reports_its_problem(changes, expected):
    problems = check_email_html(email(**changes), preheader=PREHEADER)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_missing_viewport_and_color_scheme_are_reported():
    html = email().replace(
        '<meta name="viewport" content="width=device-width, initial-scale=1">', ""
    )
    html = html.replace('<meta name="color-scheme" content="light dark">', "")
    problems = check_email_html(html)
    assert any("viewport" in p for p in problems)
    assert any("color-scheme" in p for p in problems)


def test_an_image_with_empty_alt_is_decoration_and_allowed():
    assert check_email_html(email(body='<img src="https://example.org/x.png" alt="">')) == []


def test_size_budget_is_102_kb():
    filler = "<p>" + "x" * 200 + "</p>"
    small = email(body=filler * ((MAX_HTML_BYTES - 2000) // len(filler)))
    assert check_email_html(small) == []
    big = email(body=filler * (MAX_HTML_BYTES // len(filler) + 1))
    problems = check_email_html(big)
    assert len(problems) == 1 and "must stay under 102 KB" in problems[0]
