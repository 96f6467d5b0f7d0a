"""The "Learning from Practice" archive: a static site of every issue and publication.

`render_web_issue` gives the web version of one issue (the page the emails'
"View in browser" link points at); `build_archive` writes the whole site:
home page, issue pages, publications, themes, an Atom feed and a search index.

The site is plain files with relative links, so it works from any base path,
from file:// and behind any static web server. Output is deterministic (no
"now", sorted orders, dates taken from the issues) so building twice gives
byte-identical files and a deploy by rsync or git shows only real changes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from newsletter.content.catalogue import PUBLICATION_TYPES, Catalogue, Publication
from newsletter.content.issue import Issue, Link, Section
from newsletter.content.markup import markdown_plain
from newsletter.core.atomicfile import write_bytes_atomic
from newsletter.core.bounds import project_file
from newsletter.core.project import Project
from newsletter.ledger.deliveries import read_summary
from newsletter.render.links import issue_page_path, share_ideas_mailto
from newsletter.render.templating import make_environment
from newsletter.review.approval import check_approval

SITE_TITLE = "Learning from Practice"
STYLESHEET = "site.css"
SCRIPT = "search.js"
STATIC_FILES = (STYLESHEET, SCRIPT)
# Pages are written as <dir>/index.html and linked to by that full name, so
# the site also works opened from disk, where a folder link shows a listing.
HOME_PAGE = "index.html"
PUBLICATIONS_PAGE = "publications/index.html"
THEMES_PAGE = "themes/index.html"
FEED = "feed.xml"
SEARCH_INDEX = "search-index.json"


@dataclass(frozen=True)
class LinkGroup:
    """Consecutive links of a section under one heading ("Link to document")."""

    heading: str | None
    links: tuple[Link, ...]


@dataclass(frozen=True)
class Mention:
    """A section of an issue, as listed on the publications and theme pages."""

    issue: Issue
    section: Section

    @property
    def page(self) -> str:
        return issue_page(self.issue.id)


@dataclass(frozen=True)
class PublicationEntry:
    publication: Publication
    mentions: tuple[Mention, ...]


@dataclass(frozen=True)
class PublicationGroup:
    type: str
    entries: tuple[PublicationEntry, ...]


@dataclass(frozen=True)
class Theme:
    id: str
    label: str
    mentions: tuple[Mention, ...]

    @property
    def page(self) -> str:
        return theme_page(self.id)


@dataclass(frozen=True)
class SiteInfo:
    """What every page's header and footer show."""

    name: str
    organisation: str
    postal_address: str
    base_url: str
    nav: tuple[tuple[str, str], ...] = (
        (HOME_PAGE, "News Updates"),
        (PUBLICATIONS_PAGE, "Panel publications"),
        (THEMES_PAGE, "Themes"),
    )


def issue_page(issue_id: str) -> str:
    """The file of an issue's page inside the site (the folder `links.issue_page_path` names)."""
    return issue_page_path(issue_id) + "index.html"


def theme_page(theme_id: str) -> str:
    return f"themes/{theme_id}/index.html"


def theme_label(theme_id: str) -> str:
    """A theme id as a heading: `babies-under-one` -> `Babies under one`."""
    words = theme_id.replace("-", " ")
    return words[:1].upper() + words[1:]


def long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def month_year(day: date) -> str:
    return f"{day:%B %Y}"


def link_groups(section: Section) -> list[LinkGroup]:
    """The section's links, consecutive ones with the same heading gathered under it."""
    groups: list[LinkGroup] = []
    for link in section.links:
        if groups and groups[-1].heading == link.heading:
            groups[-1] = LinkGroup(link.heading, (*groups[-1].links, link))
        else:
            groups.append(LinkGroup(link.heading, (link,)))
    return groups


def _site_info(project: Project) -> SiteInfo:
    settings = project.settings
    return SiteInfo(
        name=f"{settings.organisation}: {SITE_TITLE}",
        organisation=settings.organisation,
        postal_address=settings.postal_address,
        base_url=settings.archive_base_url,
    )


def _url_maker(root: str | None, base_url: str) -> Callable[[str], str]:
    """Links between pages: relative to `root` in the built site, else absolute."""

    def url(path: str) -> str:
        if root is None:
            return base_url + path.removesuffix("index.html")
        return root + path

    return url


def _root_for(page: str) -> str:
    """The relative way back to the site's top folder from a page, e.g. `../../`."""
    return "../" * page.count("/")


class _Site:
    """The Jinja environment and what every archive template gets."""

    def __init__(self, project: Project, catalogue: Catalogue) -> None:
        self.project = project
        self.info = _site_info(project)
        self.publications = {p.id: p for p in catalogue.publications}
        self.env: Environment = make_environment(project.template_dirs)
        self.env.filters["long_date"] = long_date
        self.env.filters["month_year"] = month_year
        self.env.filters["theme_label"] = theme_label

    def static_text(self, name: str) -> str:
        """A static file of the site (stylesheet, script), from the first template dir that has it."""
        for template_dir in self.project.template_dirs:
            path = template_dir / "web" / name
            if path.is_file():
                return project_file(path, template_dir.parent).read_text(encoding="utf-8")
        raise FileNotFoundError(f"templates/web/{name} is missing")

    def render(
        self, template: str, page: str | None, context: Mapping[str, Any], *, standalone: bool
    ) -> str:
        root = None if standalone else _root_for(page or "")
        inline_css = Markup(self.static_text(STYLESHEET)) if standalone else None
        return self.env.get_template(template).render(
            site=self.info,
            url=_url_maker(root, self.info.base_url),
            current=page,
            inline_css=inline_css,
            publications=self.publications,
            share_ideas=share_ideas_mailto,
            link_groups=link_groups,
            **context,
        )


def render_web_issue(project: Project, issue: Issue, *, standalone: bool = True) -> str:
    """The web version of one issue: the email's content (every section) in a web layout.

    Standalone (the default, for `newsletter render` and previews) the page
    carries its stylesheet inline and links to the rest of the archive by
    absolute address; inside the built site it links relatively.
    """
    site = _Site(project, project.catalogue())
    return _render_issue(site, issue, standalone=standalone)


def _render_issue(site: _Site, issue: Issue, *, standalone: bool) -> str:
    return site.render(
        "web/issue.html.j2", issue_page(issue.id), {"issue": issue}, standalone=standalone
    )


# --- the whole site --------------------------------------------------------


@dataclass(frozen=True)
class FeedEntry:
    url: str
    title: str
    updated: str
    summary: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class Feed:
    id: str
    title: str
    updated: str
    self_url: str
    home_url: str
    entries: tuple[FeedEntry, ...]


def archive_issues(project: Project, *, drafts: bool = False) -> list[Issue]:
    """The issues the archive shows, newest first: approved or sent ones, and drafts if asked.

    Approved means approved as the files stand now (`approval.check_approval`):
    an issue edited since its approval is a draft again until approved again.
    An issue sent by hand (`send --send`) without being approved still has
    readers whose "View in browser" link points here, so the ledger counts too.
    Every issue file is loaded (and so checked): the site is never built from
    broken content, as nothing is sent from it.
    """
    issues = [project.load_issue(path) for path in project.issue_paths()]
    # `approved` on the issue is what the pages show ("Draft" unless published).
    issues = [
        replace(
            issue, approved=check_approval(project, issue).approved or _was_sent(project, issue)
        )
        for issue in issues
    ]
    shown = [issue for issue in issues if drafts or issue.approved]
    return sorted(shown, key=lambda issue: (issue.date, issue.id), reverse=True)


def _was_sent(project: Project, issue: Issue) -> bool:
    summary = read_summary(project.settings.ledger_path, issue.id)
    return summary is not None and summary.counts.get("sent", 0) > 0


def _mentions(issues: Iterable[Issue]) -> list[Mention]:
    return [Mention(issue, section) for issue in issues for section in issue.sections]


def _discusses(section: Section, publication_id: str) -> bool:
    return section.publication_id == publication_id or any(
        link.publication_id == publication_id for link in section.links
    )


def publication_groups(catalogue: Catalogue, issues: Iterable[Issue]) -> list[PublicationGroup]:
    """The catalogue grouped by type (in the catalogue's type order), newest first in each."""
    mentions = _mentions(issues)
    known = list(PUBLICATION_TYPES)
    types = known + sorted({p.type for p in catalogue.publications} - set(known))
    groups = []
    for pub_type in types:
        publications = sorted(
            (p for p in catalogue.publications if p.type == pub_type),
            key=lambda p: (p.published, p.title),
            reverse=True,
        )
        entries = tuple(
            PublicationEntry(p, tuple(m for m in mentions if _discusses(m.section, p.id)))
            for p in publications
        )
        if entries:
            groups.append(PublicationGroup(pub_type, entries))
    return groups


def themes(issues: Iterable[Issue]) -> list[Theme]:
    """Every theme the sections are tagged with, alphabetically, with its sections."""
    mentions = _mentions(issues)
    ids = sorted({theme for m in mentions for theme in m.section.themes})
    return [
        Theme(theme, theme_label(theme), tuple(m for m in mentions if theme in m.section.themes))
        for theme in ids
    ]


def _atom_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _feed(project: Project, issues: list[Issue], catalogue: Catalogue) -> Feed:
    base_url = project.settings.archive_base_url
    entries = tuple(
        FeedEntry(
            url=base_url + issue_page_path(issue.id),
            title=f"{issue.title} ({month_year(issue.date)})",
            # An issue sent by hand need not be scheduled: then its date stands for when.
            updated=_atom_time(
                issue.send_at or datetime.combine(issue.date, time(), project.settings.zone)
            ),
            summary=issue.preheader,
            categories=tuple(sorted({t for s in issue.sections for t in s.themes})),
        )
        for issue in issues
    )
    if entries:
        updated = max(entry.updated for entry in entries)
    else:
        # Still a valid feed with nothing in it: dated by the newest publication.
        newest = max((p.published for p in catalogue.publications), default="2000-01")
        updated = f"{newest}-01T00:00:00Z"
    return Feed(
        id=base_url,
        title=f"{project.settings.organisation} News Update",
        updated=updated,
        self_url=base_url + FEED,
        home_url=base_url,
        entries=entries,
    )


def _words(*texts: str) -> str:
    return " ".join(" ".join(texts).lower().split())


def _points_text(section: Section) -> list[str]:
    texts: list[str] = []
    stack = list(section.points)
    while stack:
        point = stack.pop(0)
        texts.append(markdown_plain(point.text))
        stack[:0] = point.points
    return texts


def search_index(issues: Iterable[Issue], catalogue: Catalogue) -> dict[str, Any]:
    """The words each home-page entry can be found by: more than the page shows."""
    items: list[dict[str, str]] = []
    for issue in issues:
        texts = [issue.title, long_date(issue.date), markdown_plain(issue.intro)]
        for section in issue.sections:
            texts += [section.title, markdown_plain(section.lead_in), *_points_text(section)]
            texts += [markdown_plain(p) for p in section.prompts]
            texts += [link.text for link in section.links]
            texts += [theme_label(t) for t in section.themes]
        items.append(
            {
                "id": f"issue:{issue.id}",
                "title": issue.title,
                "url": issue_page(issue.id),
                "text": _words(*texts),
            }
        )
    for publication in catalogue.publications:
        texts = [publication.title, publication.type, publication.published_label]
        texts += [a.title for a in publication.attachments]
        items.append(
            {
                "id": f"publication:{publication.id}",
                "title": publication.title,
                "url": f"{PUBLICATIONS_PAGE}#{publication.id}",
                "text": _words(*texts),
            }
        )
    return {"items": items}


def _type_anchor(pub_type: str) -> str:
    return "-".join(pub_type.lower().split())


def build_archive(project: Project, out_dir: Path, *, drafts: bool = False) -> list[Path]:
    """Write the archive site into `out_dir`; return every file of the site, sorted.

    Files whose bytes would not change are left alone. Issue and theme pages
    from an earlier build that no longer belong (a draft built with --drafts,
    a renamed issue) are removed, so a draft never lingers on the public site.
    """
    catalogue = project.catalogue()
    issues = archive_issues(project, drafts=drafts)
    site = _Site(project, catalogue)
    site.env.filters["type_anchor"] = _type_anchor
    all_themes = themes(issues)
    newest_publications = sorted(
        catalogue.publications, key=lambda p: (p.published, p.title), reverse=True
    )

    files: dict[str, str] = {}

    def page(path: str, template: str, **context: Any) -> None:
        files[path] = site.render(f"web/{template}", path, context, standalone=False)

    page(
        HOME_PAGE,
        "home.html.j2",
        issues=issues,
        newest_publications=newest_publications,
        issue_page=issue_page,
    )
    for issue in issues:
        files[issue_page(issue.id)] = _render_issue(site, issue, standalone=False)
    page(PUBLICATIONS_PAGE, "publications.html.j2", groups=publication_groups(catalogue, issues))
    page(THEMES_PAGE, "themes.html.j2", themes=all_themes)
    for theme in all_themes:
        page(theme.page, "theme.html.j2", theme=theme)
    files[FEED] = site.env.get_template("web/feed.xml.j2").render(
        site=site.info, feed=_feed(project, issues, catalogue)
    )
    index = search_index(issues, catalogue)
    files[SEARCH_INDEX] = json.dumps(index, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    for name in STATIC_FILES:
        files[name] = site.static_text(name)

    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_pages(out_dir, set(files))
    written = []
    for relative, text in sorted(files.items()):
        path = out_dir / relative
        data = text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            write_bytes_atomic(path, data)
        written.append(path)
    return written


def _remove_stale_pages(out_dir: Path, keep: set[str]) -> None:
    """Remove issue and theme folders of an earlier build that this build does not have.

    Only folders holding nothing but an index.html are touched: anything else
    there was not made by this command.
    """
    for area in ("issues", "themes"):
        for folder in sorted((out_dir / area).glob("*/")):
            page = folder / "index.html"
            relative = page.relative_to(out_dir).as_posix()
            if relative in keep or not folder.is_dir():
                continue
            if [p.name for p in folder.iterdir()] == ["index.html"]:
                shutil.rmtree(folder)
        if (out_dir / area).is_dir() and not any((out_dir / area).iterdir()):
            (out_dir / area).rmdir()
