"""Fixtures that build a newsletter project to test against."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.project import Project, init_project, open_project

REPO_DIR = Path(__file__).resolve().parents[2]


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
