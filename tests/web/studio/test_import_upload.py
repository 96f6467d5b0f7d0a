"""The briefing upload: only a real .docx or UTF-8 text, small, stored under a random name.

The conversion itself is `newsletter.content.importing` (tested in
tests/content/importing/); here, the page that offers it: look first, write
only when the person confirms.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage

from newsletter.core.errors import NewsletterError
from newsletter.core.project import open_project
from newsletter.web.studio.import_views import (
    MAX_UPLOAD_BYTES,
    UPLOADS_DIR,
    stored_upload,
)
from tests.support.project import REPO_DIR
from tests.web.studio.conftest import StudioProcess


def _docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def _upload(name: str, data: bytes) -> FileStorage:
    return FileStorage(stream=io.BytesIO(data), filename=name)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("briefing.pdf", b"%PDF-1.7", "must be a Word document (.docx) or a text file"),
        ("briefing.docx", b"<html>not a zip</html>", "is not a Word document"),
        ("briefing.txt", b"", "is empty"),
        ("briefing.txt", b"\xff\xfe\x00b\x00a\x00d", "must be saved as UTF-8"),
        ("briefing.txt", b"x" * (MAX_UPLOAD_BYTES + 1), "must be smaller than 3 MB"),
        ("", b"text", "Choose a file"),
    ],
)
def test_an_upload_that_is_not_a_briefing_is_refused_and_not_kept(
    project_dir: Path, name: str, data: bytes, message: str
) -> None:
    project = open_project(project_dir)
    with pytest.raises(NewsletterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stored_upload(project, _upload(name, data))
    uploads = project_dir / UPLOADS_DIR
    assert not uploads.exists() or not any(uploads.iterdir())


def test_a_briefing_is_kept_under_a_random_name_inside_the_project(project_dir: Path) -> None:
    project = open_project(project_dir)
    first = stored_upload(project, _upload("../../etc/Briefing May.DOCX", _docx()))
    second = stored_upload(project, _upload("../../etc/Briefing May.DOCX", _docx()))
    assert first.parent == second.parent == project_dir / UPLOADS_DIR
    assert first != second and first.suffix == ".docx"
    assert "Briefing" not in first.name and first.read_bytes() == _docx()


def test_a_briefing_uploaded_is_shown_first_and_written_only_when_confirmed(
    studio: StudioProcess,
) -> None:
    paper = REPO_DIR / "issues" / "sources" / "panel-reports-may-2023.txt"
    client = studio.session()
    csrf = studio.csrf(client, "/issues/import")
    looked = client.post(
        studio.base_url + "/issues/import",
        data={"csrf_token": csrf, "issue_id": "2023-05-imported"},
        files={"briefing": ("May briefing.txt", paper.read_bytes())},
    )
    assert looked.status_code == 200
    assert "Check what will be written" in looked.text
    assert "Child Protection in England" in looked.text  # a section title, shown to check
    issue_path = studio.project_dir / "issues" / "2023-05-imported.yaml"
    assert not issue_path.exists()  # nothing written before the person confirms

    upload = re.search(r'name="upload" value="([^"]+)"', looked.text)
    assert upload is not None
    created = client.post(
        studio.base_url + "/issues/import",
        data={
            "csrf_token": csrf,
            "upload": upload.group(1),
            "issue_id": "2023-05-imported",
            "from_issue": "",
            "confirm": "yes",
        },
        allow_redirects=False,
    )
    assert created.status_code in (302, 303)
    assert created.headers["Location"].startswith("/issues/2023-05-imported")
    assert "Child Protection in England" in issue_path.read_text(encoding="utf-8")
    assert not (studio.project_dir / UPLOADS_DIR / upload.group(1)).exists()
