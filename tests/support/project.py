"""Fixtures that build a newsletter project to test against."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.core.errors import ContentError
from newsletter.core.project import Project, init_project, open_project
from newsletter.review.approval import approve_issue

REPO_DIR = Path(__file__).resolve().parents[2]
SAMPLE_ISSUE = "2023-05-panel-reports"
# Before the sample's send_at (2023-05-15 09:00 BST), as a real approval would be.
APPROVED_AT = datetime(2023, 5, 10, 14, 3, tzinfo=ZoneInfo("Europe/London"))


def approve_sample(root: Path, issue: str = SAMPLE_ISSUE, by: str = "Test Approver") -> None:
    """Approve an issue as its files stand now, as `newsletter approve` does.

    The sample ships approved; a test that edits what the approval covers
    (the issue, a template, the settings shown in the email) approves again.
    """
    approve_issue(open_project(root), issue, by, now=APPROVED_AT)


def unapprove_sample(root: Path, issue: str = SAMPLE_ISSUE) -> None:
    """Make an issue a draft nobody approved: remove its approvals file (and an empty folder)."""
    folder = root / "approvals"
    (folder / f"{issue}.yaml").unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


@pytest.fixture(scope="session", autouse=True)
def run_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Work kept by what module and session fixtures run (an archive built once) stays in
    this run too; each test then gets a folder of its own (`own_cache_home`)."""
    with pytest.MonkeyPatch.context() as patch:
        cache_home = tmp_path_factory.mktemp("run-cache-home")
        patch.setenv("XDG_CACHE_HOME", str(cache_home))
        yield cache_home


@pytest.fixture(autouse=True)
def own_cache_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test keeps work between commands (`core/cachefile`) in a cache folder of its own.

    Not the developer's ~/.cache: what one test (or an earlier run) kept must
    never decide what another sees. Child processes inherit it.
    """
    cache_home = tmp_path_factory.mktemp("cache-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return cache_home


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the bundled sample project (the May 2023 issue) in a temp directory.

    Environment overrides that could leak from the machine are cleared, so a
    developer's own NEWSLETTER_* settings never change what a test sees.
    """
    for name in list(__import__("os").environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    root = tmp_path / "project"
    init_project(root)
    return root


@pytest.fixture
def project(project_dir: Path) -> Project:
    return open_project(project_dir)


ONE_CLICK_URL = "https://news.example.org/unsubscribe"
UNSUBSCRIBE_SECRET = "test-unsubscribe-secret-4f9a2c71"


def enable_one_click(root: Path, monkeypatch: pytest.MonkeyPatch, url: str = ONE_CLICK_URL) -> None:
    """Turn on one-click unsubscribe in a sample project: an https URL and the signing secret.

    The sample ships without `unsubscribe.url` (nothing serves it until the
    team runs `newsletter serve`), so tests of the one-click headers ask for it.
    """
    path = root / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    commented = f"  # url: {ONE_CLICK_URL}"
    assert commented in text, "the sample newsletter.yaml no longer has the commented url line"
    start = text.index(commented)
    end = text.index("\n", start)
    path.write_text(text[:start] + f"  url: {url}" + text[end:], encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)


@pytest.fixture
def one_click(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample project with one-click unsubscribe on; ask for it before `project`.

    The unsubscribe setting shows in every email, so the sample is approved again.
    """
    enable_one_click(project_dir, monkeypatch)
    approve_sample(project_dir)


# --- editing the sample as a comms officer would ---------------------------------

ISSUE = SAMPLE_ISSUE


def edit_issue(
    project_dir: Path, *, approved: bool | None = None, send_at: str | None = None
) -> None:
    """Change the sample issue as the comms officer would: reschedule it, approve it or not.

    `approved=True`: approved by "Test Approver" (in place of the approval the
    sample ships with) before the change and again after it, as `newsletter
    approve` does; a change that makes the issue invalid cannot be approved,
    so then it stays approved-then-changed. `approved=False`: a draft nobody
    approved.
    """
    if approved is not None:
        unapprove_sample(project_dir)
    if approved:
        approve_sample(project_dir)
    path = project_dir / "issues" / f"{ISSUE}.yaml"
    before = text = path.read_text(encoding="utf-8")
    if send_at is not None:
        text, n = re.subn(r"(?m)^send_at: .*$", f'send_at: "{send_at}"', text)
        assert n == 1
    path.write_text(text, encoding="utf-8")
    # Unchanged, the second approval would record nothing new (approve_issue
    # keeps a person's approval of the same files): only a change needs it.
    if approved and text != before:
        with contextlib.suppress(ContentError):  # invalid now: approved, then changed
            approve_sample(project_dir)


def speed_up(project_dir: Path, per_second: int | None = None) -> None:
    """Lift the sample's rate limit (10 a second) and retry delays, so tests run quickly."""
    path = project_dir / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^  per_second: .*$", f"  per_second: {per_second or 'null'}", text)
    assert n == 1
    text, n = re.subn(r"(?m)^  base_delay_seconds: .*$", "  base_delay_seconds: 0.01", text)
    assert n == 1
    path.write_text(text, encoding="utf-8")


def set_per_day(project_dir: Path, per_day: int) -> None:
    """Add `rate.per_day` to the sample settings, as the README says to."""
    path = project_dir / "newsletter.yaml"
    text = path.read_text("utf-8")
    text, n = re.subn(r"(?m)^  per_hour: null$", f"  per_hour: null\n  per_day: {per_day}", text)
    assert n == 1
    path.write_text(text, encoding="utf-8")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
