"""The rendered email: structure, inlining, personalisation, text part, budget.

Everything is checked on the shipped May 2023 issue, parsed with lxml, the way
a mail client would see it.
"""

from __future__ import annotations

import itertools
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import cssutils
import lxml.html
import pytest
from click.testing import CliRunner
from lxml.html import HtmlElement

from newsletter.audience.lists import Recipient, Variant, sample_recipients
from newsletter.content.issue import Issue, Point
from newsletter.content.markup import markdown_plain
from newsletter.core.project import Project
from newsletter.render.budget import check_email_html
from newsletter.render.variants import Renderer, inline_css, wrap_text

ISSUE_ID = "2023-05-panel-reports"
BRUISING = "bruising-in-non-mobile-infants"


@pytest.fixture
def issue(project: Project) -> Issue:
    return project.load_issue(ISSUE_ID)


@pytest.fixture
def samples(project: Project, issue: Issue) -> dict[str, tuple[Recipient, Variant]]:
    found, _ = sample_recipients(project.audience_source(), issue)
    return found


@pytest.fixture
def renderer(project: Project, issue: Issue) -> Renderer:
    return Renderer(project, issue)


def everyone(samples: dict[str, tuple[Recipient, Variant]]) -> tuple[Recipient, Variant]:
    return samples["all-sections"]


def parse(html: str) -> HtmlElement:
    return lxml.html.document_fromstring(html)


def words(text: str) -> str:
    return " ".join(text.split())


def all_points(points: tuple[Point, ...]) -> list[Point]:
    found = []
    for point in points:
        found.append(point)
        found += all_points(point.points)
    return found


# --- structure ----------------------------------------------------------------


def test_sections_appear_in_issue_order_as_h2_after_one_h1(renderer, issue, samples):
    recipient, variant = everyone(samples)
    doc = parse(renderer.personalise(variant, recipient).html)
    assert [words(h.text_content()) for h in doc.xpath("//h1")] == [issue.title]
    assert [words(h.text_content()) for h in doc.xpath("//h2")] == [s.title for s in issue.sections]
    # Headings in order: no h3 before the first h2, no level skipped.
    levels = [int(h.tag[1]) for h in doc.xpath("//h1|//h2|//h3|//h4")]
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels))


def test_variant_without_a_section_leaves_it_out(renderer, samples):
    recipient, variant = samples[f"without-{BRUISING}"]
    doc = parse(renderer.personalise(variant, recipient).html)
    titles = [words(h.text_content()) for h in doc.xpath("//h2")]
    assert "Bruising in non-mobile infants" not in titles
    assert len(titles) == 9


def test_every_section_has_prompts_box_buttons_and_share_ideas(renderer, issue, samples):
    recipient, variant = everyone(samples)
    doc = parse(renderer.personalise(variant, recipient).html)
    for section in issue.sections:
        block = doc.get_element_by_id(section.id)
        assert words(block.xpath(".//h3")[0].text_content()) == section.prompts_heading
        prompts = [words(li.text_content()) for li in block.xpath(".//td[@class='prompts']//li")]
        assert prompts == list(section.prompts)
        buttons = block.xpath(".//a[contains(@class, 'button-a')]")
        with_url = [link for link in section.links if link.url]
        assert [b.get("href") for b in buttons] == [link.url for link in with_url]
        for button in buttons:
            assert button.text_content().startswith(("Read the report: ", "Open: "))
        share = block.xpath(".//a[contains(@class, 'share-a')]")
        assert len(share) == 1
        assert words(share[0].text_content()) == f"Share your ideas on {section.title}"


def test_share_ideas_mailto_names_issue_and_section_in_its_subject(renderer, issue, samples):
    recipient, variant = everyone(samples)
    doc = parse(renderer.personalise(variant, recipient).html)
    for section in issue.sections:
        href = doc.get_element_by_id(section.id).xpath(".//a[contains(@class,'share-a')]")[0]
        parts = urlsplit(href.get("href"))
        assert parts.scheme == "mailto"
        assert unquote(parts.path) == issue.reply_to
        assert " " not in parts.query  # percent-encoded, not raw
        subject = parse_qs(parts.query)["subject"][0]
        assert subject == f"Ideas: {issue.title} (May 2023) - {section.title}"


def test_link_without_url_is_text_marked_to_follow_with_no_button(renderer, samples):
    recipient, variant = everyone(samples)
    doc = parse(renderer.personalise(variant, recipient).html)
    block = doc.get_element_by_id("out-of-routine")
    assert not block.xpath(".//a[contains(@class, 'button-a')]")
    assert "(link to follow)" in words(block.text_content())


def test_every_layout_table_is_presentation_and_links_are_absolute(renderer, samples):
    recipient, variant = everyone(samples)
    doc = parse(renderer.personalise(variant, recipient).html)
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)
    hrefs = [a.get("href") for a in doc.xpath("//a")]
    assert hrefs and all(h.startswith(("https://", "mailto:")) for h in hrefs)
    assert not doc.xpath("//script|//link[@rel='stylesheet']")


def test_lang_dir_title_meta_and_hidden_preheader_first(renderer, issue, samples):
    recipient, variant = everyone(samples)
    doc = parse(renderer.personalise(variant, recipient).html)
    assert doc.get("lang") == "en-GB" and doc.get("dir") == "ltr"
    body = doc.body
    wrapper = body[0]
    assert wrapper.get("lang") == "en-GB" and wrapper.get("dir") == "ltr"
    assert doc.find(".//title").text == issue.subject
    metas = {m.get("name"): m.get("content") for m in doc.xpath("//meta[@name]")}
    assert "width=device-width" in metas["viewport"]
    assert metas["color-scheme"] == "light dark"
    preheader = wrapper[0]
    assert preheader.text_content().startswith(issue.preheader)
    assert "display:none" in preheader.get("style").replace(" ", "")


def test_html_is_within_the_size_budget_and_passes_every_check(renderer, issue, samples):
    for recipient, variant in samples.values():
        html = renderer.personalise(variant, recipient).html
        assert len(html.encode()) < 102 * 1024
        assert check_email_html(html, preheader=issue.preheader) == []


# --- inlining -----------------------------------------------------------------


def test_styles_are_inlined_and_the_responsive_rules_keep_important(renderer, samples):
    recipient, variant = everyone(samples)
    html = renderer.personalise(variant, recipient).html
    doc = parse(html)
    h2 = doc.xpath("//h2")[0]
    assert "font-size:22px" in h2.get("style").replace(" ", "")
    styles = "\n".join(s.text_content() for s in doc.xpath("//style"))
    phone = re.search(r"@media screen and \(max-width: 600px\) \{(.*?)\n\}", styles, re.S)
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)\n\}", styles, re.S)
    assert phone and dark
    for block in (phone.group(1), dark.group(1)):
        declarations = [d for d in re.findall(r"[a-z-]+:\s*[^;{}]+", block)]
        assert declarations
        assert all(d.rstrip().endswith("!important") for d in declarations), declarations


# Selectors every client family that reads <style> at all understands (caniemail):
# a single type or class. Pseudo-classes, attribute and universal selectors,
# combinators and chained compounds are dropped by Gmail's or Outlook's apps,
# and the properties below are ignored by most clients.
SIMPLE_SELECTOR = re.compile(r"^(?::root|[a-z][a-z0-9]*|\.[a-z][a-z0-9-]*)$")
UNSUPPORTED_PROPERTIES = {"overflow-wrap", "word-wrap", "word-break", "outline"}


def style_rules(sheet: object) -> list[object]:
    found = []
    for rule in sheet.cssRules:  # type: ignore[attr-defined]
        if rule.type == rule.MEDIA_RULE:
            found += style_rules(rule)
        elif rule.type == rule.STYLE_RULE:
            found.append(rule)
    return found


def test_kept_style_rules_use_only_features_every_client_family_reads(renderer, samples):
    recipient, variant = everyone(samples)
    doc = parse(renderer.personalise(variant, recipient).html)
    # Only <style> outside conditional comments: those inside are for Outlook alone.
    sheets = [cssutils.parseString(s.text_content()) for s in doc.xpath("//style")]
    rules = [rule for sheet in sheets for rule in style_rules(sheet)]
    assert len(rules) > 10
    selectors = {sel.selectorText for rule in rules for sel in rule.selectorList}
    assert [s for s in selectors if not SIMPLE_SELECTOR.match(s)] == []
    properties = {prop.name for rule in rules for prop in rule.style}
    assert properties & UNSUPPORTED_PROPERTIES == set()
    assert "background-color" in properties  # the dark-mode rules are among them


def test_inlining_keeps_important_and_conditional_comments_unchanged():
    mso = (
        '<!--[if mso]><table role="presentation" width="600"><tr><td><![endif]-->',
        "<!--[if mso]></td></tr></table><![endif]-->",
        "<!--[if !mso]><!-->",
        "<!--<![endif]-->",
    )
    source = (
        "<!DOCTYPE html><html lang='en-GB' dir='ltr'><head><title>t</title>"
        "<style>p { color: #111111; } .x { color: red !important; }</style>"
        "<style data-premailer='ignore'>@media (max-width: 600px) { p { color: blue !important; } }</style>"
        "</head><body>" + mso[0] + "<p class='x'>Hi</p><a href='page'>a page</a>" + mso[1] + mso[2]
        + "<span>not outlook</span>" + mso[3] + "</body></html>"
    )  # fmt: skip
    out = inline_css(source, "https://news.example.org/base/")
    for comment in mso:
        assert out.count(comment) == source.count(comment) == 1
    assert out.count("<!--[if") == source.count("<!--[if")
    assert "p { color: blue !important; }" in out
    assert 'style="color:red !important"' in out
    assert 'href="https://news.example.org/base/page"' in out


def test_template_conditional_comments_survive_inlining(project, issue, renderer, samples):
    _recipient, variant = everyone(samples)
    raw = renderer._env.get_template("email/newsletter.html.j2").render(renderer.context(variant))
    html = renderer.variant(variant).html
    assert raw.count("<!--[if mso]>") == html.count("<!--[if mso]>") >= 3
    assert raw.count("<![endif]-->") == html.count("<![endif]-->")
    for block in re.findall(r"<!--\[if mso\]>.*?<!\[endif\]-->", raw, re.S):
        assert block in html


# --- personalisation --------------------------------------------------------------


def test_personalise_never_reruns_premailer_or_jinja(renderer, samples, monkeypatch):
    _recipient, variant = everyone(samples)
    renderer.variant(variant)

    def forbidden(*args, **kwargs):
        raise AssertionError("personalise must not render or inline again")

    monkeypatch.setattr("newsletter.render.variants.inline_css", forbidden)
    monkeypatch.setattr(renderer._env, "get_template", forbidden)
    one = renderer.personalise(variant, Recipient("a@example.org", "Ann Ames"))
    two = renderer.personalise(variant, Recipient("b@example.org", "Bob Bell"))
    assert "Dear Ann Ames," in one.html and "Dear Bob Bell," in two.html
    assert "a@example.org" in one.text and "b@example.org" not in one.text


@pytest.mark.usefixtures("one_click")
def test_personal_values_are_escaped_and_links_are_the_recipients(
    renderer, project, issue, samples
):
    _, variant = everyone(samples)
    person = Recipient("o'brien+news@example.org", 'Eve <script>alert("x")</script> & Co')
    email = renderer.personalise(variant, person)
    assert "<script>" not in email.html
    doc = parse(email.html)
    assert 'Dear Eve <script>alert("x")</script> & Co,' in words(doc.body.text_content())
    unsubscribe = doc.xpath("//a[starts-with(normalize-space(.), 'Unsubscribe')]")[0].get("href")
    query = parse_qs(urlsplit(unsubscribe).query)
    assert query["address"] == [person.email] and query["issue"] == [issue.id]
    web = doc.xpath("//a[normalize-space(.)='View this News Update in your browser']")[0]
    assert web.get("href") == f"{project.settings.archive_base_url}issues/{issue.id}/"
    assert "slot-" not in email.html and "SLOT" not in email.html
    assert "slot-" not in email.text and "SLOT" not in email.text
    assert 'Dear Eve <script>alert("x")</script> & Co,' in email.text


def test_recipient_without_a_name_is_greeted_plainly(renderer, samples):
    _, variant = everyone(samples)
    email = renderer.personalise(variant, Recipient("x@example.org", ""))
    assert "Hello," in email.text and "Dear ," not in email.text


def test_raw_html_in_content_is_escaped(project_dir, project):
    path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "- Responding to reachable/critical moments in children's lives",
        "- Responding to <img src=x onerror=alert(1)> moments",
        1,
    )
    path.write_text(text, encoding="utf-8")
    issue = project.load_issue(ISSUE_ID)
    renderer = Renderer(project, issue)
    found, _ = sample_recipients(project.audience_source(), issue)
    recipient, variant = found["all-sections"]
    html = renderer.personalise(variant, recipient).html
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


# --- text part ------------------------------------------------------------------


def test_text_part_wraps_at_78_and_never_breaks_a_url(renderer, issue, samples):
    recipient, variant = everyone(samples)
    text = renderer.personalise(variant, recipient).text
    for line in text.splitlines():
        assert len(line) <= 78 or re.fullmatch(r"(https://|mailto:)\S+", line), line
    for section in issue.sections:
        for link in section.links:
            if link.url:
                assert f"\n{link.url}\n" in text
    assert "<" not in re.sub(r"<script>|<[^>]*@[^>]*>", "", text)  # no HTML tags


def test_wrap_text_keeps_a_hanging_indent_for_bullets():
    wrapped = wrap_text("- " + "word " * 30 + "\n  - " + "deeper " * 20)
    lines = wrapped.splitlines()
    assert all(len(line) <= 78 for line in lines)
    assert lines[0].startswith("- ") and lines[1].startswith("  word")
    assert any(line.startswith("  - deeper") for line in lines)
    assert any(line.startswith("    deeper") for line in lines)


def test_every_seed_bullet_prompt_and_link_text_reaches_html_and_text(renderer, issue, samples):
    recipient, variant = everyone(samples)
    email = renderer.personalise(variant, recipient)
    html_text = words(parse(email.html).body.text_content())
    plain = words(email.text)
    expected = []
    for section in issue.sections:
        expected += [section.title, section.lead_in]
        expected += [p.text for p in all_points(section.points)]
        expected += list(section.prompts)
        expected += [link.text for link in section.links]
    assert len(expected) > 100
    for item in expected:
        wanted = words(markdown_plain(item))
        assert wanted in html_text, f"missing from the HTML: {wanted}"
        assert wanted.lower() in plain.lower(), f"missing from the text part: {wanted}"


# --- `newsletter render` --------------------------------------------------------


def test_render_command_writes_every_variant_index_web_and_eml(project_dir, tmp_path):
    from newsletter.cli import cli

    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "render", ISSUE_ID, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for key in ("all-sections", f"without-{BRUISING}"):
        html = (out / f"{key}.html").read_text(encoding="utf-8")
        assert check_email_html(html) == []
        assert (out / f"{key}.txt").read_text(encoding="utf-8").strip()
        message = message_from_bytes((out / f"{key}.eml").read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        assert message["Subject"].startswith("News Update, May 2023")
        parts = [p.get_content_type() for p in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        html_part = message.get_body(("html",))
        assert html_part is not None
        assert html_part.get_content().replace("\r\n", "\n").strip() == html.strip()
    index = parse((out / "index.html").read_text(encoding="utf-8"))
    targets = {a.get("href") for a in index.xpath("//a")}
    assert {"web.html", "all-sections.html", "all-sections.txt", "all-sections.eml"} <= targets
    web = (out / "web.html").read_text(encoding="utf-8")
    assert "It was Hard to Escape" in web


def test_render_defaults_to_out_issue_id_in_the_project(project_dir):
    from newsletter.cli import cli

    result = CliRunner().invoke(cli, ["--root", str(project_dir), "render", ISSUE_ID])
    assert result.exit_code == 0, result.output
    assert (project_dir / "out" / ISSUE_ID / "all-sections.html").exists()


def test_render_refuses_an_email_over_budget_and_writes_nothing(project_dir, tmp_path):
    from newsletter.cli import cli

    template = project_dir / "templates" / "email" / "_footer.html.j2"
    template.write_text(
        template.read_text(encoding="utf-8")
        + "<tr><td><p>" + "padding text " * 9000 + "</p></td></tr>\n",
        encoding="utf-8",
    )  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "render", ISSUE_ID, "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "Gmail clips it" in result.output
    assert f"{ISSUE_ID}.yaml:1:1:" in result.output
    assert not out.exists()


def test_project_templates_override_the_defaults(project_dir, project, issue, samples):
    intro = Path(project_dir / "templates" / "email" / "_intro.html.j2")
    intro.write_text(
        intro.read_text(encoding="utf-8").replace("<h1>", "<h1>Local: "), encoding="utf-8"
    )
    recipient, variant = everyone(samples)
    html = Renderer(project, issue).personalise(variant, recipient).html
    assert "Local: Reports from" in html
