"""Bad briefings: one clear line naming the file, exit 1, nothing written.

Each case is a file a person could upload: something else under a Word name,
a password-protected document, a zip bomb, an empty document, a paper with
no sections. Both the library (BriefingError) and the command are checked.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from docx import Document

from newsletter.cli import cli
from newsletter.content.importing import import_briefing
from newsletter.content.importing.docx_package import MAX_PARTS, MAX_UNPACKED_BYTES, MAX_XML_BYTES
from newsletter.core.errors import BriefingError
from newsletter.core.project import open_project

# The first bytes of an encrypted Office document (an OLE compound file), as Word saves one.
OLE_HEADER = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504)


def pdf(path: Path) -> None:
    path.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")


def encrypted(path: Path) -> None:
    path.write_bytes(OLE_HEADER)


def zip_not_word(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("notes.txt", "a zip of something else")


def bomb(path: Path) -> None:
    """A few hundred kilobytes that would unpack to more than the limit."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        with package.open("word/document.xml", "w", force_zip64=True) as part:
            chunk = bytes(1 << 20)
            for _ in range(MAX_UNPACKED_BYTES // len(chunk) + 1):
                part.write(chunk)


def huge_text(path: Path) -> None:
    """A document whose text part alone is more than a briefing could be."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("word/document.xml", b"<w:p/>" * (MAX_XML_BYTES // 6 + 1))


def many_parts(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("word/document.xml", "<w:document/>")
        for number in range(MAX_PARTS):
            package.writestr(f"word/media/part{number}.xml", "")


def empty_docx(path: Path) -> None:
    Document().save(str(path))


def empty_text(path: Path) -> None:
    path.write_text("\n\n   \n", encoding="utf-8")


def no_sections(path: Path) -> None:
    path.write_text(
        "Team notes\n\nWe met on Tuesday and agreed to meet again next month.\n", encoding="utf-8"
    )


def binary_text(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + bytes(64))


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("report.docx", pdf, "is not a Word document"),
    ("report.docx", encrypted, "password-protected"),
    ("report.docx", zip_not_word, "not a Word document"),
    ("report.docx", bomb, "would unpack to"),
    ("report.docx", many_parts, "parts, more than a Word document has"),
    ("report.docx", huge_text, "bytes of document text"),
    ("report.docx", empty_docx, "is empty"),
    ("report.txt", empty_text, "is empty"),
    ("report.md", empty_text, "is empty"),
    ("report.txt", no_sections, "has no recognisable section"),
    ("report.md", binary_text, "is not a text file"),
    ("report.pdf", pdf, "cannot import this kind of file"),
]
IDS = [f"{make.__name__}-{name.rsplit('.', 1)[1]}" for name, make, _ in CASES]


def snapshot(root: Path) -> list[tuple[Path, bytes]]:
    return sorted((p, p.read_bytes()) for p in (root / "issues").rglob("*") if p.is_file())


@pytest.mark.parametrize(("name", "make", "says"), CASES, ids=IDS)
def test_a_bad_briefing_is_refused_by_name_and_nothing_is_written(
    project_dir: Path, tmp_path: Path, name: str, make: Callable[[Path], None], says: str
) -> None:
    source = tmp_path / name
    make(source)
    before = snapshot(project_dir)
    with pytest.raises(BriefingError) as refused:
        import_briefing(open_project(project_dir), source)
    message = str(refused.value)
    assert message.startswith(f"{source}: ") and says in message
    assert "\n" not in message
    assert snapshot(project_dir) == before


ON_THE_COMMAND_LINE = [case for case in CASES if case[1] in (pdf, encrypted, bomb, empty_docx)]


@pytest.mark.parametrize(
    ("name", "make", "says"),
    ON_THE_COMMAND_LINE,
    ids=[f"{make.__name__}-{name.rsplit('.', 1)[1]}" for name, make, _ in ON_THE_COMMAND_LINE],
)
def test_the_command_prints_one_line_and_exits_1(
    project_dir: Path, tmp_path: Path, name: str, make: Callable[[Path], None], says: str
) -> None:
    source = tmp_path / name
    make(source)
    before = snapshot(project_dir)
    result = CliRunner().invoke(cli, ["--root", str(project_dir), "import", str(source)])
    assert result.exit_code == 1
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith(f"newsletter: {source}: ") and says in lines[0]
    assert "Traceback" not in result.output
    assert snapshot(project_dir) == before


def test_a_missing_file_is_named(project_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "not-there.docx"
    with pytest.raises(BriefingError, match="there is no such file"):
        import_briefing(open_project(project_dir), source)
