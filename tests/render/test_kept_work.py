"""Work kept between commands: the same emails, faster, or the work done again.

Compiled templates and premailer's inlined HTML are kept (`render/template_cache`,
`render/inlining`). What a person sees must not depend on whether they were:
a second render gives the same bytes, an edited template shows, and a cache
that is damaged or cannot be written is worked around, never trusted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.audience.lists import Recipient, Variant, sample_recipients
from newsletter.cli import cli
from newsletter.content.issue import Issue
from newsletter.core.paths import ProjectPaths
from newsletter.core.project import Project, open_project
from newsletter.render import inlining
from newsletter.render.template_cache import environment_signature
from newsletter.render.templating import HTML_TEMPLATE, make_environment
from newsletter.render.variants import Renderer

ISSUE_ID = "2023-05-panel-reports"


@pytest.fixture
def issue(project: Project) -> Issue:
    return project.load_issue(ISSUE_ID)


def samples(project: Project, issue: Issue) -> list[tuple[Recipient, Variant]]:
    found, _ = sample_recipients(project.audience_source(), issue)
    return [found[key] for key in sorted(found)]


def emails(project: Project, issue: Issue) -> list[tuple[str, str, str]]:
    """Subject, HTML and text of one person's email per variant, from a new renderer."""
    renderer = Renderer(project, issue)
    found = []
    for recipient, variant in samples(project, issue):
        email = renderer.personalise(variant, recipient)
        found.append((email.subject, email.html, email.text))
    return found


def premailer_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(document: str, base_url: str) -> str:
        raise AssertionError("premailer ran although its result was kept")

    monkeypatch.setattr(inlining, "inline_css", refuse)


def cache_dir(project: Project | Path) -> Path:
    paths = project.paths if isinstance(project, Project) else ProjectPaths(project.resolve())
    assert paths.cache_dir is not None
    return paths.cache_dir


def cache_files(project: Project, prefix: str) -> list[Path]:
    return sorted(cache_dir(project).glob(f"{prefix}-*"))


def test_a_second_render_is_the_same_bytes_without_premailer(
    project: Project, issue: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = emails(project, issue)
    assert len(cache_files(project, "inline")) == len(first) == 2
    assert cache_files(project, "template")
    premailer_refused(monkeypatch)
    assert emails(project, issue) == first


def test_a_kept_result_is_what_inlining_gives_now(project: Project, issue: Issue) -> None:
    emails(project, issue)  # keeps premailer's results, made with that renderer's nonce
    renderer = Renderer(project, issue)  # another nonce
    _, variant = samples(project, issue)[0]
    kept = renderer.variant(variant).html
    context = renderer.context(variant)
    fresh = inlining.inline_css(
        renderer._env.get_template(HTML_TEMPLATE).render(context),
        project.settings.archive_base_url,
    )
    assert kept == fresh


def test_validate_run_again_says_the_same(project_dir: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["--root", str(project_dir), "validate"])
    assert cache_dir(project_dir).is_dir()
    assert not (project_dir / "var").exists()  # the ledger's folder: not made by a check
    again = runner.invoke(cli, ["--root", str(project_dir), "validate"])
    assert first.exit_code == again.exit_code == 0, first.output
    assert again.output == first.output


def test_an_edited_template_shows_at_once(project: Project, issue: Issue) -> None:
    emails(project, issue)
    template = project.paths.templates_dir / HTML_TEMPLATE
    source = template.read_text(encoding="utf-8")
    assert "</body>" in source
    template.write_text(source.replace("</body>", "<p>Edited just now</p></body>"), "utf-8")
    for _, html, _ in emails(project, issue):
        assert "Edited just now" in html


def test_edited_content_shows_at_once(project_dir: Path) -> None:
    project = open_project(project_dir)
    emails(project, project.load_issue(ISSUE_ID))
    issue_path = project.paths.issues_dir / f"{ISSUE_ID}.yaml"
    text = issue_path.read_text(encoding="utf-8")
    title = project.load_issue(ISSUE_ID).sections[0].title
    issue_path.write_text(text.replace(title, title + " (revised)", 1), "utf-8")
    project = open_project(project_dir)
    for _, html, _ in emails(project, project.load_issue(ISSUE_ID)):
        assert "(revised)" in html


def test_damaged_cache_files_are_not_trusted(
    project: Project, issue: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = emails(project, issue)
    for path in cache_files(project, "inline") + cache_files(project, "template"):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # as a crash or a full disk could leave it
    calls = []
    fresh = inlining.inline_css

    def counted(document: str, base_url: str) -> str:
        calls.append(base_url)
        return fresh(document, base_url)

    monkeypatch.setattr(inlining, "inline_css", counted)
    assert emails(project, issue) == first
    assert len(calls) == 2  # inlined again, and kept again
    monkeypatch.setattr(inlining, "inline_css", fresh)
    premailer_refused(monkeypatch)
    assert emails(project, issue) == first


def test_a_cache_that_cannot_be_written_changes_nothing(project_dir: Path) -> None:
    cache_dir(project_dir).parent.mkdir(parents=True)
    cache_dir(project_dir).write_text("not a folder")  # fails even for root
    runner = CliRunner()
    done = runner.invoke(cli, ["--root", str(project_dir), "validate"])
    assert done.exit_code == 0, done.output
    assert "OK: 0 error(s)" in done.output
    project = open_project(project_dir)
    issue = project.load_issue(ISSUE_ID)
    assert emails(project, issue) == emails(project, issue)


def test_kept_files_gone_stale_change_nothing(project_dir: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["--root", str(project_dir), "validate"])
    for path in cache_dir(project_dir).iterdir():
        path.write_bytes(b"stale")
    again = runner.invoke(cli, ["--root", str(project_dir), "validate"])
    assert again.exit_code == 0 and again.output == first.output


def test_content_holding_the_nonce_mark_is_inlined_afresh(
    project: Project, issue: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mark stands for the nonce in kept files; HTML already holding it is never kept.
    tokens = ("SLOTabcGREETINGEND",)
    document = f"<html><body><p>{inlining.NONCE_MARK}</p><p>{tokens[0]}</p></body></html>"
    cache = Renderer(project, issue)._kept
    assert cache is not None
    first = inlining.inline_css_kept(document, "https://x.example", ("abc", tokens), cache, "t")
    assert not cache_files(project, "t")
    assert first == inlining.inline_css(document, "https://x.example")


def test_compiled_templates_are_kept_apart_by_environment(project: Project) -> None:
    plain = make_environment(project.template_dirs, cache_dir(project))
    more = make_environment(project.template_dirs, cache_dir(project))
    more.filters["reflow"] = str.strip
    assert environment_signature(plain, HTML_TEMPLATE) != environment_signature(more, HTML_TEMPLATE)
    text = make_environment(project.template_dirs, cache_dir(project))
    assert environment_signature(plain, HTML_TEMPLATE) != environment_signature(
        text, "email/newsletter.txt.j2"
    )  # autoescape differs by file type
