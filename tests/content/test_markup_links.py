"""Markdown in content is rendered safely; every link an email carries is built right."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from newsletter.content import markup
from newsletter.content.issue import Issue
from newsletter.content.markup import markdown_block, markdown_inline, markdown_plain
from newsletter.core.project import Project, open_project
from newsletter.render.links import (
    RESUBSCRIBE,
    UNSUBSCRIBE,
    address_token_is_valid,
    share_ideas_mailto,
    unsubscribe_https_url,
    unsubscribe_link,
    web_version_url,
)
from tests.support.project import UNSUBSCRIBE_SECRET, enable_one_click


def test_bold_and_italics_become_html() -> None:
    html = markdown_inline("in **all** cases, *invisibilised* and *adultified*")
    assert html == "in <strong>all</strong> cases, <em>invisibilised</em> and <em>adultified</em>"


def test_raw_html_in_content_is_escaped_never_passed_through() -> None:
    html = markdown_inline('Note <script>alert("x")</script> and <a href="https://e.org">x</a>')
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<a href" not in html


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "data:text/html,hi", "http://example.org"]
)
def test_unsafe_link_targets_are_not_linked(target: str) -> None:
    assert "<a " not in markdown_inline(f"[look]({target})")


def test_https_and_mailto_links_are_kept() -> None:
    assert '<a href="https://www.gov.uk/x">GOV.UK</a>' in markdown_inline(
        "[GOV.UK](https://www.gov.uk/x)"
    )
    assert 'href="mailto:ideas@example.org"' in markdown_block("[mail](mailto:ideas@example.org)")


def test_plain_text_drops_emphasis_marks_and_writes_links_out() -> None:
    text = markdown_plain(
        "in **all** cases *who are not mobile*: see [the paper](https://www.gov.uk/p)"
    )
    assert text == "in all cases who are not mobile: see the paper (https://www.gov.uk/p)"


@pytest.fixture
def issue(project: Project) -> Issue:
    return project.load_issue("2023-05-panel-reports")


def test_share_ideas_mailto_names_issue_and_section_percent_encoded(issue: Issue) -> None:
    section = issue.section("safeguarding-children-with-disabilities")
    link = share_ideas_mailto(issue, section)
    parts = urlsplit(link)
    assert parts.scheme == "mailto"
    assert parts.path == "ideas@example.org"
    assert " " not in link and "&" not in parts.query.split("subject=", 1)[1]
    subject = unquote(parse_qs(parts.query, keep_blank_values=True)["subject"][0])
    assert issue.title in subject
    assert "May 2023" in subject
    assert section.title in subject


def test_web_version_url_is_the_archive_page_of_the_issue(project: Project, issue: Issue) -> None:
    assert (
        web_version_url(project.settings, issue)
        == "https://news.example.org/learning-from-practice/issues/2023-05-panel-reports/"
    )


@pytest.mark.usefixtures("one_click")
def test_unsubscribe_link_identifies_the_person_and_issue(project: Project, issue: Issue) -> None:
    url = unsubscribe_https_url(project.settings, issue, "O'Neill+news@example.org")
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["address"] == ["O'Neill+news@example.org"]
    assert query["issue"] == ["2023-05-panel-reports"]


@pytest.mark.usefixtures("one_click")
def test_unsubscribe_token_is_signed_over_address_and_list(project: Project, issue: Issue) -> None:
    url = unsubscribe_link(project.settings, issue, "jo@example.org")
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert len(token) == 32
    assert UNSUBSCRIBE_SECRET not in url
    list_id = project.settings.list_id
    secret = UNSUBSCRIBE_SECRET
    assert address_token_is_valid(secret, UNSUBSCRIBE, list_id, "JO@example.org", token)
    assert not address_token_is_valid(secret, UNSUBSCRIBE, "other.list", "jo@example.org", token)
    assert not address_token_is_valid(secret, RESUBSCRIBE, list_id, "jo@example.org", token)
    assert not address_token_is_valid(secret, UNSUBSCRIBE, list_id, "sam@example.org", token)
    assert not address_token_is_valid(
        "another-secret", UNSUBSCRIBE, list_id, "jo@example.org", token
    )
    other = unsubscribe_link(project.settings, issue, "sam@example.org")
    assert parse_qs(urlsplit(other).query)["token"][0] != token


def test_without_a_secret_the_footer_link_is_the_mailto(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An https URL but no secret: `serve` would refuse an unsigned link, so none is promised.
    enable_one_click(project_dir, monkeypatch)
    monkeypatch.delenv("NEWSLETTER_UNSUBSCRIBE_SECRET")
    project = open_project(project_dir)
    issue = project.load_issue("2023-05-panel-reports")
    assert unsubscribe_https_url(project.settings, issue, "jo@example.org") is None
    assert unsubscribe_link(project.settings, issue, "jo@example.org").startswith(
        "mailto:unsubscribe@example.org?"
    )


# --- text that cannot hold a link is not parsed --------------------------------

# Everything Markdown and HTML give meaning to, but the two characters every link
# starts with: brackets closed, entities and escapes for them, bare addresses.
NO_OPENER = (
    "ab ]()!:/.@\\&#;*_`~-+=|{}>\"' \n\t12345https://www.example.org/x?y=1 mailto:a@b.example"
    " &#91; &#x5B; &lsqb; &#60; &lt; \\] www.example.org user@example.org ftp://x javascript:x"
)


def links_as_parsed(text: str, *, block: bool) -> list[str]:
    """markdown_links without its shortcut: markdown-it's tree, walked."""
    return [
        str(node.attrs.get("href", node.attrs.get("src", "")))
        for node in markup._tree(text, block=block).walk()
        if node.type in ("link", "image")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "See https://www.gov.uk/guidance for more",
        "&#91;the report&#93;(https://example.org/a)",
        "&lt;https://example.org/a&gt;",
        "\\\\&#91;x](https://example.org)",
        "![alt](https://example.org/a.png",
        "]: https://example.org/ref\n\n]ref]",
        "    indented code (https://example.org)\n\n> quote (https://example.org)",
        "- a list\n- with https://example.org\n\n1. and mailto:x@example.org",
    ],
)
def test_text_without_a_bracket_or_angle_holds_no_link(text: str) -> None:
    assert markup.markdown_links(text) == markup.markdown_links(text, block=True) == []
    assert links_as_parsed(text, block=False) == links_as_parsed(text, block=True) == []


def test_the_parser_agrees_on_many_random_texts_without_a_bracket_or_angle() -> None:
    rng = random.Random(20261206)
    for _ in range(1500):
        text = "".join(rng.choice(NO_OPENER) for _ in range(rng.randrange(1, 40)))
        for block in (False, True):
            assert links_as_parsed(text, block=block) == [], text


def test_text_with_a_link_is_still_parsed() -> None:
    assert markup.markdown_links("[the report](https://example.org/a)") == ["https://example.org/a"]
    assert markup.markdown_links("<https://example.org/b>") == ["https://example.org/b"]
    assert markup.markdown_links("[x][r]\n\n[r]: https://example.org/c", block=True) == [
        "https://example.org/c"
    ]
