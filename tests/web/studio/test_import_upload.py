"""The briefing upload: only a real .docx or UTF-8 text, small, stored under a random name.

The conversion itself (`newsletter.content.importing`) is joined to the studio
at merge; until it is there, the page says importing is unavailable and an
upload writes nothing.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage

from newsletter.core.errors import NewsletterError
from newsletter.core.project import open_project
from newsletter.web.studio.import_views import (
    MAX_UPLOAD_BYTES,
    UPLOADS_DIR,
    importer,
    stored_upload,
)
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


def test_without_the_importer_the_page_says_so_and_takes_nothing(studio: StudioProcess) -> None:
    assert importer() is None  # joined at merge: this test then needs its happy path
    client = studio.session()
    page = client.get(studio.base_url + "/issues/import")
    assert page.status_code == 200
    assert "Importing is not available in this installation yet" in page.text
    csrf = studio.csrf(client, "/issues/import")
    response = client.post(
        studio.base_url + "/issues/import",
        data={"csrf_token": csrf},
        files={"briefing": ("briefing.docx", _docx())},
    )
    assert response.status_code == 200
    uploads = studio.project_dir / UPLOADS_DIR
    assert not uploads.exists()
