"""The archive site, as a reader and a web server would see it: parsed, not string-matched."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import lxml.html
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.content.catalogue import PUBLICATION_TYPES
from newsletter.core.errors import ContentError
from newsletter.core.project import Project, open_project
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.render.links import share_ideas_mailto, web_version_url
from newsletter.web.archive import build_archive, render_web_issue
from tests.support.memory_transport import MemoryTransport
from tests.support.project import approve_sample, unapprove_sample

ATOM = "{http://www.w3.org/2005/Atom}"
ISSUE_ID = "2023-05-panel-reports"


@pytest.fixture(autouse=True)
def sample_is_a_draft(project_dir: Path) -> None:
    """The sample ships approved; here it starts as a draft, so approving it is a step."""
    unapprove_sample(project_dir)


def approve(project_dir: Path, issue_id: str = ISSUE_ID) -> Project:
    """Approve as `newsletter approve` does (the issue file keeps `approved: false`)."""
    approve_sample(project_dir, issue_id)
    return open_project(project_dir)


def add_issue(project_dir: Path, issue_id: str, day: str, *, approved: bool = True) -> None:
    """A second, smaller issue, dated `day`, copied from the sample's structure (approved as
    `newsletter approve` does, unless `approved=False`)."""
    (project_dir / "issues" / f"{issue_id}.yaml").write_text(
        f"""id: {issue_id}
title: Later reports
subject: "News Update: later reports"
preheader: One more report.
date: {day}
send_at: "{day}T09:00:00+01:00"
approved: false
audience: [all-practitioners]
reply_to: ideas@example.org
intro: A shorter issue.
sections:
  - id: safer-sleep-again
    title: Safer sleep again
    publication: out-of-routine
    themes: [safer-sleep]
    points: ["Zebra crossing is a word only this issue uses."]
    prompts: ["What do you think?"]
    links:
      - text: Out of Routine
        publication: out-of-routine
""",
        encoding="utf-8",
    )
    if approved:
        approve_sample(project_dir, issue_id)


def parse(path: Path) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(path.read_bytes())


def text_of(element: lxml.html.HtmlElement) -> str:
    return " ".join(element.text_content().split())


@pytest.fixture
def site(project_dir: Path, tmp_path: Path) -> tuple[Project, Path]:
    project = approve(project_dir)
    out = tmp_path / "site"
    build_archive(project, out)
    return project, out


def test_every_issue_page_is_where_its_email_links(site: tuple[Project, Path]) -> None:
    project, out = site
    issue = project.load_issue(ISSUE_ID)
    url = web_version_url(project.settings, issue)
    assert url.startswith(project.settings.archive_base_url)
    page_path = out / url.removeprefix(project.settings.archive_base_url) / "index.html"
    page = parse(page_path)
    assert text_of(page.xpath("//h1")[0]) == issue.title
    # The public archive shows every section, even those only some agencies get by email.
    headings = [text_of(h) for h in page.xpath("//main//h2")]
    assert [s.title for s in issue.sections] == [h for h in headings if h != "Contents"]
    assert "Bruising in non-mobile infants" in headings


def test_issue_page_has_the_emails_content(project: Project) -> None:
    issue = project.load_issue(ISSUE_ID)
    page = lxml.html.fromstring(render_web_issue(project, issue))
    for section in issue.sections:
        block = page.xpath(f'//section[@id="{section.id}"]')[0]
        if section.prompts:
            assert text_of(block.xpath('.//div[@class="prompts"]/h3')[0]) == section.prompts_heading
            hrefs = [a.get("href") for a in block.xpath(".//a")]
            assert share_ideas_mailto(issue, section) in hrefs
        for link in section.links:
            if link.url:
                assert link.url in [a.get("href") for a in block.xpath(".//a")]
    out_of_routine = text_of(page.xpath('//section[@id="out-of-routine"]')[0])
    assert "Out of Routine: A review of sudden unexpected death" in out_of_routine
    assert "(link to follow)" in out_of_routine
    # Markdown in bullets is rendered, and nested bullets stay nested.
    domestic = page.xpath('//section[@id="multi-agency-safeguarding-and-domestic-abuse"]')[0]
    assert "over 40% of cases notified to the Panel" in [
        text_of(s) for s in domestic.xpath(".//strong")
    ]
    assert [text_of(li) for li in domestic.xpath(".//ul/li/ul/li")][:2] == [
        "Domestic abuse informed",
        "Trauma informed",
    ]


def test_standalone_issue_page_carries_its_style_and_absolute_links(project: Project) -> None:
    issue = project.load_issue(ISSUE_ID)
    page = lxml.html.fromstring(render_web_issue(project, issue))
    assert page.xpath("//style") and not page.xpath('//link[@rel="stylesheet"]')
    base = project.settings.archive_base_url
    nav = [a.get("href") for a in page.xpath("//header//a")]
    assert nav[0] == base and f"{base}publications/" in nav


def test_no_raw_html_from_content_reaches_the_page(project_dir: Path) -> None:
    path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("Responding to reachable/critical moments", "<script>alert(1)</script>"),
        encoding="utf-8",
    )
    project = open_project(project_dir)
    html = render_web_issue(project, project.load_issue(ISSUE_ID))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_every_catalogue_entry_is_on_the_publications_page(site: tuple[Project, Path]) -> None:
    project, out = site
    page = parse(out / "publications" / "index.html")
    catalogue = project.catalogue()
    for publication in catalogue.publications:
        entry = page.xpath(f'//li[@id="{publication.id}"]')
        assert entry, publication.id
        entry_text = text_of(entry[0])
        assert publication.title in entry_text
        hrefs = [a.get("href") for a in entry[0].xpath(".//a")]
        if publication.url:
            assert publication.url in hrefs
        else:
            assert "No link yet" in entry_text
    # Grouped by type, newest first within each type.
    groups = page.xpath("//main/section")
    types = [text_of(g.xpath("./h2")[0]) for g in groups]
    assert types == [t for t in PUBLICATION_TYPES if t in types]
    for group in groups:
        months = [catalogue.get(li.get("id")).published for li in group.xpath("./ul/li")]
        assert months == sorted(months, reverse=True)


def test_publications_link_to_the_sections_that_discussed_them(site: tuple[Project, Path]) -> None:
    _, out = site
    page = parse(out / "publications" / "index.html")
    entry = page.xpath('//li[@id="annual-report-2020"]')[0]
    discussed = [a.get("href") for a in entry.xpath(".//a")]
    # Linked from a section's document links, not only from its `publication`.
    assert discussed == [f"../issues/{ISSUE_ID}/index.html#national-panel-annual-reports"]
    never = page.xpath('//li[@id="rapid-review-examples"]')[0]
    assert "Discussed in" not in text_of(never)


def test_theme_pages_list_sections_across_issues(project_dir: Path, tmp_path: Path) -> None:
    project = approve(project_dir)
    add_issue(project_dir, "2023-08-later", "2023-08-14")
    out = tmp_path / "site"
    build_archive(project, out)
    page = parse(out / "themes" / "safer-sleep" / "index.html")
    assert text_of(page.xpath("//h1")[0]) == "Safer sleep"
    hrefs = [a.get("href") for a in page.xpath("//main//li/a")]
    assert hrefs == [
        "../../issues/2023-08-later/index.html#safer-sleep-again",
        f"../../issues/{ISSUE_ID}/index.html#out-of-routine",
    ]
    index = parse(out / "themes" / "index.html")
    assert "Safer sleep (2 sections)" in [text_of(li) for li in index.xpath("//main//li")]


def test_home_lists_issues_newest_first_with_their_sections(
    project_dir: Path, tmp_path: Path
) -> None:
    project = approve(project_dir)
    add_issue(project_dir, "2023-08-later", "2023-08-14")
    out = tmp_path / "site"
    build_archive(project, out)
    home = parse(out / "index.html")
    items = home.xpath('//ul[@data-noun="issues"]/li')
    assert [li.get("data-search-id") for li in items] == [
        "issue:2023-08-later",
        f"issue:{ISSUE_ID}",
    ]
    assert "14 August 2023" in text_of(items[0])
    assert [text_of(li) for li in items[0].xpath("./ul/li")] == ["Safer sleep again"]
    assert len(items[1].xpath("./ul/li")) == 10


def test_feed_is_valid_atom(site: tuple[Project, Path]) -> None:
    project, out = site
    root = ET.parse(out / "feed.xml").getroot()
    assert root.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{name}") is not None, name
    self_link = root.find(f"{ATOM}link[@rel='self']")
    assert self_link is not None
    assert self_link.get("href") == project.settings.archive_base_url + "feed.xml"
    entries = root.findall(f"{ATOM}entry")
    issue = project.load_issue(ISSUE_ID)
    assert len(entries) == 1
    entry = entries[0]
    for name in ("id", "title", "updated", "summary"):
        assert (entry.findtext(f"{ATOM}{name}") or "").strip(), name
    link = entry.find(f"{ATOM}link")
    assert link is not None and link.get("href") == web_version_url(project.settings, issue)
    updated = datetime.fromisoformat(entry.findtext(f"{ATOM}updated") or "")
    assert updated == issue.send_at
    assert root.findtext(f"{ATOM}updated") == entry.findtext(f"{ATOM}updated")


def test_drafts_are_left_out_unless_asked_for(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "site"
    build_archive(project, out)
    assert not (out / "issues").exists()
    assert not parse(out / "index.html").xpath('//ul[@data-noun="issues"]')
    assert ET.parse(out / "feed.xml").getroot().findall(f"{ATOM}entry") == []
    assert "Discussed in" not in text_of(parse(out / "publications" / "index.html"))

    build_archive(project, out, drafts=True)
    page = out / "issues" / ISSUE_ID / "index.html"
    assert "Draft" in text_of(parse(page).xpath("//main")[0])

    # Building for the public again takes the draft back off the site.
    build_archive(project, out)
    assert not page.exists()


def test_an_issue_changed_since_its_approval_is_a_draft_again(
    project_dir: Path, tmp_path: Path
) -> None:
    project = approve(project_dir)
    out = tmp_path / "site"
    build_archive(project, out)
    page = out / "issues" / ISSUE_ID / "index.html"
    assert "Draft" not in text_of(parse(page).xpath("//main")[0])

    path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("title: ", "title: Draft 2 of ", 1),
        encoding="utf-8",
    )
    build_archive(open_project(project_dir), out)
    assert not page.exists()


def test_an_issue_sent_then_no_longer_approved_is_still_published(
    project_dir: Path, tmp_path: Path
) -> None:
    # Sent while approved, then its approval withdrawn (or the file edited since): its
    # readers' "View in browser" links point at the archive, so the page must stay there.
    project = approve(project_dir)
    issue = project.load_issue(ISSUE_ID)
    result = send_issue(project, issue, SendOptions(rate=0), transport_factory=MemoryTransport)
    assert result.sent > 0
    unapprove_sample(project_dir)
    project = open_project(project_dir)
    out = tmp_path / "site"
    build_archive(project, out)
    page = out / "issues" / ISSUE_ID / "index.html"
    assert page.exists()
    assert "Draft" not in text_of(parse(page).xpath("//main")[0])
    assert len(ET.parse(out / "feed.xml").getroot().findall(f"{ATOM}entry")) == 1


def test_building_twice_gives_identical_files(project_dir: Path, tmp_path: Path) -> None:
    project = approve(project_dir)
    add_issue(project_dir, "2023-08-later", "2023-08-14")
    first = build_archive(project, tmp_path / "a")
    second = build_archive(project, tmp_path / "b")
    relative = [p.relative_to(tmp_path / "a") for p in first]
    assert relative == [p.relative_to(tmp_path / "b") for p in second]
    assert len(relative) > 10
    for path in relative:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path


def test_every_link_inside_the_site_resolves(site: tuple[Project, Path]) -> None:
    """Relative links only, each to a file (and anchor) that exists: works from file://."""
    _, out = site
    for page_path in sorted(out.rglob("*.html")):
        page = parse(page_path)
        for element in page.xpath("//a[@href] | //link[@href] | //script[@src]"):
            target = element.get("href") or element.get("src")
            parts = urlsplit(target)
            if parts.scheme in ("https", "mailto", "data"):
                continue
            assert not parts.scheme and not target.startswith("/"), (page_path, target)
            file = (page_path.parent / unquote(parts.path)).resolve() if parts.path else page_path
            assert file.is_file(), (page_path, target)
            if parts.fragment:
                assert parse(file).xpath(f'//*[@id="{parts.fragment}"]'), (page_path, target)


def test_pages_have_landmarks_and_headings_in_order(site: tuple[Project, Path]) -> None:
    _, out = site
    for page_path in sorted(out.rglob("*.html")):
        page = parse(page_path)
        assert page.get("lang") == "en-GB"
        for landmark in ("header", "nav", "main", "footer"):
            assert page.xpath(f"//{landmark}"), (page_path, landmark)
        skip = page.xpath('//body/a[@class="skip-link"]')[0]
        assert page.xpath(f'//main[@id="{skip.get("href")[1:]}"]')
        levels = [int(h.tag[1]) for h in page.xpath("//main//*[self::h1 or self::h2 or self::h3]")]
        assert levels[0] == 1 and levels.count(1) == 1, page_path
        assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), (page_path, levels)


def test_search_index_covers_every_home_page_entry(site: tuple[Project, Path]) -> None:
    import json

    _, out = site
    index = json.loads((out / "search-index.json").read_text(encoding="utf-8"))
    by_id = {item["id"]: item for item in index["items"]}
    home = parse(out / "index.html")
    ids = [li.get("data-search-id") for li in home.xpath("//li[@data-search-id]")]
    assert len(ids) == 1 + 19
    assert set(ids) == set(by_id)
    # The index holds words the home page doesn't show, such as a bullet's.
    assert "clare's law" in by_id[f"issue:{ISSUE_ID}"]["text"]
    assert "clare" not in text_of(home).lower()


def test_archive_command_builds_the_site(project_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "public"
    runner = CliRunner()
    result = runner.invoke(cli, ["--root", str(project_dir), "archive", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Built 3 pages" in result.output
    assert (out / "index.html").is_file() and not (out / "issues").exists()

    result = runner.invoke(
        cli, ["--root", str(project_dir), "archive", "--drafts", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "issues" / ISSUE_ID / "index.html").is_file()

    result = runner.invoke(cli, ["--root", str(project_dir), "archive"])
    assert result.exit_code == 0, result.output
    assert (project_dir / "site" / "feed.xml").is_file()


def test_broken_content_builds_nothing(project_dir: Path, tmp_path: Path) -> None:
    path = project_dir / "issues" / f"{ISSUE_ID}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "publication: out-of-routine\n", "publication: out-of-rutine\n", 1
        ),
        encoding="utf-8",
    )
    with pytest.raises(ContentError) as caught:
        build_archive(open_project(project_dir), tmp_path / "site")
    assert "out-of-rutine" in str(caught.value)
    assert not (tmp_path / "site").exists()

    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "archive", "--out", str(tmp_path / "site")]
    )
    assert result.exit_code == 1
    assert "did you mean `out-of-routine`" in result.output
