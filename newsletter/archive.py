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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from newsletter.content import Catalogue, Issue, Link, Publication, Section
from newsletter.links import issue_page_path, share_ideas_mailto
from newsletter.project import Project
from newsletter.templating import make_environment

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
                return path.read_text(encoding="utf-8")
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
