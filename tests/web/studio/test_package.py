"""The studio's templates and static files ship inside the wheel (package data), as the app reads them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from newsletter.web.studio.pages import STATIC_DIR, TEMPLATES_DIR

REPO_DIR = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_wheel_carries_every_studio_template_and_static_file(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO_DIR),
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("newsletter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        path.relative_to(REPO_DIR).as_posix()
        for folder in (TEMPLATES_DIR, STATIC_DIR)
        for path in folder.rglob("*")
        if path.is_file()
    }
    assert "newsletter/web/studio/static/govuk/govuk-frontend.min.css" in shipped
    assert "newsletter/web/studio/static/govuk/LICENSE" in shipped
    assert "newsletter/web/studio/templates/edit.html.j2" in shipped
    assert shipped <= names, sorted(shipped - names)
