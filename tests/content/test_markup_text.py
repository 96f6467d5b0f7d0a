"""The HTML, the plain-text part and the link checks read Markdown the same way.

Each case is written once with what a reader sees in the HTML and in the text
part; the link cases check that the links the content checks look at are the
links the HTML carries. The email-level tests render a real issue holding the
same awkward Markdown and read both parts the way a mail client would.
"""

from __future__ import annotations

from pathlib import Path

import lxml.html
import pytest

from newsletter.audience.lists import sample_recipients
from newsletter.content.fields import markdown_link_problems
from newsletter.content.markup import (
    markdown_block,
    markdown_inline,
    markdown_links,
    markdown_plain,
)
from newsletter.core.checks import link_problem
from newsletter.core.project import open_project
from newsletter.render.variants import Renderer

# (Markdown, the inline HTML, the text part)
INLINE = [
    pytest.param(
        r"Escaped \*not emphasis\*",
        "Escaped *not emphasis*",
        "Escaped *not emphasis*",
        id="escaped-stars",
    ),
    pytest.param(
        r"\[not a link\](https://www.gov.uk/p) and a\_b",
        "[not a link](https://www.gov.uk/p) and a_b",
        "[not a link](https://www.gov.uk/p) and a_b",
        id="escaped-brackets",
    ),
    pytest.param(
        "[x]( https://ok.example )",
        '<a href="https://ok.example">x</a>',
        "x (https://ok.example)",
        id="spaced-target",
    ),
    pytest.param(
        "see [the paper](<https://www.gov.uk/a b>)",
        'see <a href="https://www.gov.uk/a%20b">the paper</a>',
        "see the paper (https://www.gov.uk/a%20b)",
        id="angle-target-with-space",
    ),
    pytest.param(
        '[the paper](https://www.gov.uk/p "Panel paper")',
        '<a href="https://www.gov.uk/p" title="Panel paper">the paper</a>',
        "the paper (https://www.gov.uk/p)",
        id="target-with-title",
    ),
    pytest.param(
        "Read <https://www.gov.uk/x> today",
        'Read <a href="https://www.gov.uk/x">https://www.gov.uk/x</a> today',
        "Read https://www.gov.uk/x today",
        id="autolink",
    ),
    pytest.param(
        "Write to <ideas@example.org>",
        'Write to <a href="mailto:ideas@example.org">ideas@example.org</a>',
        "Write to ideas@example.org",
        id="email-autolink",
    ),
    pytest.param(
        "Tom &amp; Jerry &copy; 2023, &lt;b&gt; &#8212; fin",
        "Tom &amp; Jerry © 2023, &lt;b&gt; — fin",
        "Tom & Jerry © 2023, <b> — fin",
        id="entities",
    ),
    pytest.param(
        "Use `*args*` literally",
        "Use <code>*args*</code> literally",
        "Use *args* literally",
        id="code-span-keeps-stars",
    ),
    pytest.param(
        "in **all** cases *who are not mobile*: see [the *paper*](https://www.gov.uk/p)",
        "in <strong>all</strong> cases <em>who are not mobile</em>: see "
        '<a href="https://www.gov.uk/p">the <em>paper</em></a>',
        "in all cases who are not mobile: see the paper (https://www.gov.uk/p)",
        id="emphasis-and-link",
    ),
]

# (Markdown, the block HTML, the text part) for fields read as blocks (the intro).
BLOCK = [
    pytest.param(
        "Before you read:\n\n- one\n  - one a\n    - deeper\n  - one b\n- two\n\nAfter.",
        "<p>Before you read:</p>\n<ul>\n<li>one\n<ul>\n<li>one a\n<ul>\n<li>deeper</li>\n"
        "</ul>\n</li>\n<li>one b</li>\n</ul>\n</li>\n<li>two</li>\n</ul>\n<p>After.</p>\n",
        "Before you read:\n\n- one\n  - one a\n    - deeper\n  - one b\n- two\n\nAfter.",
        id="nested-list",
    ),
    pytest.param(
        "3. three\n4. four\n   * four a",
        '<ol start="3">\n<li>three</li>\n<li>four\n<ul>\n<li>four a</li>\n</ul>\n</li>\n</ol>\n',
        "3. three\n4. four\n   - four a",
        id="ordered-list-with-start",
    ),
    pytest.param(
        "- one\ncontinued\n- two",
        "<ul>\n<li>one\ncontinued</li>\n<li>two</li>\n</ul>\n",
        "- one continued\n- two",
        id="lazy-continuation",
    ),
    pytest.param(
        "A paragraph\nhard-wrapped in YAML &amp; \\*escaped\\*.",
        "<p>A paragraph\nhard-wrapped in YAML &amp; *escaped*.</p>\n",
        "A paragraph hard-wrapped in YAML & *escaped*.",
        id="paragraph",
    ),
    pytest.param(
        "See [the paper][p].\n\n[p]: https://www.gov.uk/p",
        '<p>See <a href="https://www.gov.uk/p">the paper</a>.</p>\n',
        "See the paper (https://www.gov.uk/p).",
        id="reference-link",
    ),
]


@pytest.mark.parametrize(("source", "html", "text"), INLINE)
def test_inline_markdown_reads_the_same_in_html_and_text(source: str, html: str, text: str) -> None:
    assert markdown_inline(source) == html
    assert markdown_plain(source) == text


@pytest.mark.parametrize(("source", "html", "text"), BLOCK)
def test_block_markdown_reads_the_same_in_html_and_text(source: str, html: str, text: str) -> None:
    assert markdown_block(source) == html
    assert markdown_plain(source, block=True) == text


def test_a_hard_line_break_stays_a_line_break_in_the_text() -> None:
    assert markdown_inline("line one  \nline two") == "line one<br />\nline two"
    assert markdown_plain("line one  \nline two") == "line one\nline two"
    assert markdown_plain("line one  \nline two", block=True) == "line one\nline two"


def test_a_loose_list_keeps_its_blank_lines_and_item_paragraphs_indented() -> None:
    text = markdown_plain("- first\n\n  more on first\n\n- second", block=True)
    assert text == "- first\n\n  more on first\n\n- second"


# --- links: what the checks see is what the HTML links -----------------------

LINK_SOURCES = [
    *(case.values[0] for case in INLINE),
    *(case.values[0] for case in BLOCK),
    "Look [here](javascript:alert(1)) and ![a chart](https://www.gov.uk/c.png)",
    "[plain http](http://example.org/a) and <http://example.org/b>",
    "`[in code](http://example.org)` is not a link",
]


def html_targets(html: str) -> list[str]:
    doc = lxml.html.fragment_fromstring(html, create_parent="div")
    return [el.get("href") or el.get("src") for el in doc.xpath("//a[@href]|//img[@src]")]


@pytest.mark.parametrize("block", [False, True], ids=["inline", "block"])
@pytest.mark.parametrize("source", LINK_SOURCES)
def test_link_extraction_finds_exactly_the_links_the_html_carries(source: str, block: bool) -> None:
    html = markdown_block(source) if block else markdown_inline(source)
    found = markdown_links(source, block=block)
    # Unsafe targets are found (for the content checks) but never linked.
    assert [target for target in found if not link_problem(target)] == html_targets(html)


def test_unsafe_links_are_found_and_shown_unlinked_in_both_parts() -> None:
    source = "Look [here](javascript:alert(1)) or <http://example.org/b> ![chart](http://e.org/c)"
    assert markdown_links(source) == [
        "javascript:alert(1)",
        "http://example.org/b",
        "http://e.org/c",
    ]
    assert markdown_inline(source) == "Look here or http://example.org/b chart"
    assert markdown_plain(source) == "Look here or http://example.org/b chart"


def test_the_content_check_ignores_link_syntax_the_html_shows_as_text() -> None:
    assert markdown_link_problems("`[in code](http://example.org)` is code, not a link") == []
    assert markdown_link_problems(r"\[escaped\](http://example.org) is text") == []


def test_the_content_check_sees_reference_links_and_spaced_targets() -> None:
    assert markdown_link_problems("See [the paper][p].\n\n[p]: http://www.gov.uk/p") == [
        "the link `http://www.gov.uk/p` uses http:, which is not secure; use https:"
    ]
    assert markdown_link_problems("[x]( javascript:alert(1) )") == [
        "the link `javascript:alert(1)` uses javascript:, which is never allowed in an email"
    ]


# --- a whole email -------------------------------------------------------------

AWKWARD_ISSUE = r"""id: awkward-markdown
title: Awkward Markdown
subject: "News Update: awkward Markdown"
preheader: Escapes, entities and lists.
date: 2023-06-15
send_at: "2023-06-15T09:00:00+01:00"
audience: [all-practitioners]
reply_to: ideas@example.org
intro: |
  Read this
  first, Tom &amp; Jerry.

  - one
    - one a
  - two
sections:
  - id: awkward
    title: Awkward
    lead_in: 'Escaped \*not emphasis\* &copy; 2023'
    points:
      - "[x]( https://ok.example )"
      - text: Write to <ideas@example.org>
        points:
          - "Or read <https://www.gov.uk/x>"
    prompts:
      - 'Do you use `*args*`?'
"""


@pytest.fixture
def awkward_email(project_dir: Path) -> tuple[lxml.html.HtmlElement, str]:
    (project_dir / "issues" / "awkward-markdown.yaml").write_text(AWKWARD_ISSUE, encoding="utf-8")
    project = open_project(project_dir)
    issue = project.load_issue("awkward-markdown")
    samples, _ = sample_recipients(project.audience_source(), issue)
    recipient, variant = next(iter(samples.values()))
    email = Renderer(project, issue).personalise(variant, recipient)
    return lxml.html.document_fromstring(email.html), email.text


def test_the_email_text_part_matches_its_html(
    awkward_email: tuple[lxml.html.HtmlElement, str],
) -> None:
    doc, text = awkward_email
    intro = doc.xpath("//td[contains(@class, 'intro')]")[0]
    assert "Read this first, Tom & Jerry." in " ".join(intro.text_content().split())
    assert [" ".join(li.text_content().split()) for li in intro.xpath(".//li")] == [
        "one one a",
        "one a",
        "two",
    ]
    assert "\nRead this first, Tom & Jerry.\n\n- one\n  - one a\n- two\n" in text

    section = doc.xpath("//div[@id='awkward']")[0]
    assert "Escaped *not emphasis* © 2023" in section.text_content()
    assert "\nEscaped *not emphasis* © 2023\n" in text
    assert [(a.get("href"), a.text_content()) for a in section.xpath(".//li//a")] == [
        ("https://ok.example", "x"),
        ("mailto:ideas@example.org", "ideas@example.org"),
        ("https://www.gov.uk/x", "https://www.gov.uk/x"),
    ]
    assert (
        "\n- x (https://ok.example)\n- Write to ideas@example.org\n"
        "  - Or read https://www.gov.uk/x\n" in text
    )
    assert section.xpath(".//li/code")[0].text_content() == "*args*"
    assert "\n- Do you use *args*?\n" in text
