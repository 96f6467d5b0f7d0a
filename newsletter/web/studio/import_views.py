"""Import a briefing paper (Word, or plain text) as a new issue: upload, look, then write.

The conversion is `newsletter.content.importing.import_briefing`, the same
function `newsletter import` calls. An upload is
hostile until checked: only .docx (a zip, by its first bytes), .txt and .md,
at most MAX_UPLOAD_BYTES, stored under a random name in var/studio/uploads
(never the name it came with), looked at with `dry_run=True` first, and
written only when the person confirms what they saw.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Request, Response

from newsletter.content.importing import import_briefing
from newsletter.core.errors import NewsletterError
from newsletter.web.studio.pages import redirect

if TYPE_CHECKING:
    from newsletter.core.project import Project
    from newsletter.web.studio.app import Studio

UPLOADS_DIR = "var/studio/uploads"
MAX_UPLOAD_BYTES = 3 * 1024 * 1024  # under the studio's 4 MB limit for a whole request
SUFFIXES = (".docx", ".txt", ".md")
ZIP_START = b"PK\x03\x04"
_UPLOAD_NAME = re.compile(r"[0-9a-f]{32}\.(docx|txt|md)")


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def stored_upload(project: Project, upload: FileStorage | None) -> Path:
    """The uploaded file, checked and saved under a random name; NewsletterError saying why not."""
    if upload is None or not upload.filename:
        raise NewsletterError("Choose a file to import")
    suffix = _suffix(upload.filename)
    if suffix not in SUFFIXES:
        raise NewsletterError("The file must be a Word document (.docx) or a text file (.txt, .md)")
    data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise NewsletterError(
            f"The file must be smaller than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
        )
    if not data:
        raise NewsletterError("The file is empty")
    if suffix == ".docx" and not data.startswith(ZIP_START):
        raise NewsletterError("The file is not a Word document (.docx), whatever its name says")
    if suffix != ".docx":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise NewsletterError("The text file must be saved as UTF-8") from None
    folder = project.root_dir / UPLOADS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(16)}{suffix}"
    path.write_bytes(data)
    return path


def _uploaded(project: Project, name: str) -> Path | None:
    """An earlier upload of this studio, by the random name it was given."""
    if not _UPLOAD_NAME.fullmatch(name):
        return None
    path = project.root_dir / UPLOADS_DIR / name
    return path if path.is_file() else None


def import_page(studio: Studio, request: Request) -> Response:
    project = studio.project()
    issues = [path.stem for path in project.issue_paths()]
    values = {
        "issue_id": request.form.get("issue_id", "").strip(),
        "from_issue": request.form.get("from_issue", ""),
    }
    page: dict[str, Any] = {"issues": issues, "values": values}
    if request.method == "GET":
        return studio.pages.page("import.html.j2", error=None, result=None, upload="", **page)
    earlier = values["from_issue"] if values["from_issue"] in issues else None
    new_id = values["issue_id"] or None
    try:
        confirmed = _uploaded(project, request.form.get("upload", ""))
        if confirmed is not None and request.form.get("confirm") == "yes":
            result = import_briefing(
                project, confirmed, issue_id=new_id, from_issue=earlier, dry_run=False
            )
            confirmed.unlink(missing_ok=True)
            return redirect(f"/issues/{result.issue_id}?saved=1")
        path = stored_upload(project, request.files.get("briefing"))
        result = import_briefing(project, path, issue_id=new_id, from_issue=earlier, dry_run=True)
    except NewsletterError as error:
        return studio.pages.page(
            "import.html.j2", 400, error=str(error), result=None, upload="", **page
        )
    return studio.pages.page("import.html.j2", error=None, result=result, upload=path.name, **page)
