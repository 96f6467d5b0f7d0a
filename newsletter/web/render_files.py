"""The files `newsletter render` writes: each variant's email, the web version, an index.

For every variant, a sample recipient's personalised HTML and text parts and
the whole message as a `.eml`; then the issue's web version and an
`index.html` linking them all. This module sits above both the renderer and
the archive (it needs the email and the web page), so neither has to know
about the other.

The files are a real recipient's email, so they are written readable by the
owner only (0600, in folders created 0700), whatever the umask.

A template that does not render is a located content error
(`path:line:column: message`), and a folder that cannot be written is one
line naming it, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import TemplateError

from newsletter.audience.lists import Recipient, Variant
from newsletter.content.issue import Issue
from newsletter.core.errors import ContentError, NewsletterError, Problem
from newsletter.core.private_files import private_dir, write_private, write_private_text
from newsletter.core.project import Project
from newsletter.render.message import PersonalisedEmail, build_message, message_bytes
from newsletter.render.problems import render_error_problems
from newsletter.render.templating import make_environment
from newsletter.render.variants import Renderer, budget_problems, sample_variants
from newsletter.web.archive import render_web_issue

INDEX_TEMPLATE = "web/preview/render-index.html.j2"


@dataclass(frozen=True)
class RenderedFile:
    """One variant's files and what the command reports about them."""

    variant: Variant
    recipients: int
    html_path: Path
    text_path: Path
    eml_path: Path
    sample_address: str
    html_bytes: int


@dataclass(frozen=True)
class RenderedFiles:
    """What `write_rendered_issue` wrote."""

    out_dir: Path
    index_path: Path
    web_path: Path
    variants: tuple[RenderedFile, ...]

    @property
    def paths(self) -> list[Path]:
        paths = [self.index_path, self.web_path]
        for v in self.variants:
            paths += [v.html_path, v.text_path, v.eml_path]
        return paths


_Email = tuple[Variant, Recipient, int, PersonalisedEmail]


def write_rendered_issue(project: Project, issue: Issue, out_dir: Path) -> RenderedFiles:
    """Write every variant's HTML, text and sample .eml, the web version and an index.

    Raises ContentError, writing nothing, if a template does not render or
    any variant breaks the size, safety or accessibility budget; and
    NewsletterError naming the file if `out_dir` cannot be written.
    """
    try:
        emails, web_html = _render(project, issue)
    except TemplateError as error:
        raise ContentError(render_error_problems(error, issue.path)) from None
    try:
        return _write(project, issue, out_dir, emails, web_html)
    except OSError as error:
        where = error.filename or out_dir
        raise NewsletterError(
            f"cannot write {where} ({error.strerror}); choose a folder you can write to with --out"
        ) from None
    except TemplateError as error:
        raise ContentError(render_error_problems(error, issue.path)) from None


def _render(project: Project, issue: Issue) -> tuple[list[_Email], str]:
    renderer = Renderer(project, issue)
    emails: list[_Email] = []
    problems: list[Problem] = []
    for variant, recipient, count in sample_variants(project, issue):
        email = renderer.personalise(variant, recipient)
        problems += budget_problems(issue, variant, email.html)
        emails.append((variant, recipient, count, email))
    if problems:
        raise ContentError(problems)
    return emails, render_web_issue(project, issue)


def _write(
    project: Project, issue: Issue, out_dir: Path, emails: list[_Email], web_html: str
) -> RenderedFiles:
    private_dir(out_dir)
    written = []
    for variant, recipient, count, email in emails:
        html_path = out_dir / f"{variant.key}.html"
        text_path = out_dir / f"{variant.key}.txt"
        eml_path = out_dir / f"{variant.key}.eml"
        write_private_text(html_path, email.html)
        write_private_text(text_path, email.text)
        message = build_message(project.settings, issue, recipient, email)
        write_private(eml_path, message_bytes(message))
        written.append(
            RenderedFile(
                variant,
                count,
                html_path,
                text_path,
                eml_path,
                recipient.email,
                len(email.html.encode("utf-8")),
            )
        )
    web_path = out_dir / "web.html"
    write_private_text(web_path, web_html)
    index_path = out_dir / "index.html"
    write_private_text(
        index_path,
        make_environment(project.template_dirs)
        .get_template(INDEX_TEMPLATE)
        .render(issue=issue, files=written, settings=project.settings),
    )
    return RenderedFiles(out_dir, index_path, web_path, tuple(written))
