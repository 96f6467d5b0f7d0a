"""Check a .docx file is a safe, readable Word package before python-docx opens it.

A .docx is a zip of XML parts. A hostile or broken upload can be something
else with the name (a PDF, an old .doc), a password-protected document (Word
then writes an encrypted OLE container, not a zip), or a zip bomb: a few
kilobytes that unpack to gigabytes, or thousands of parts. python-docx would
unpack whatever it is given, so the package is measured from its zip
directory first. The sizes are the declared ones; Python's zipfile never
unpacks more than an entry declares (it stops, and a mismatch fails its CRC),
so the declared total bounds what python-docx can unpack.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from newsletter.core.errors import BriefingError

MAX_FILE_BYTES = 20_000_000
MAX_PARTS = 1_000
MAX_UNPACKED_BYTES = 100_000_000  # pictures included
MAX_XML_BYTES = 20_000_000  # the parts python-docx parses: some thousands of pages of text
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted .docx, or an old .doc


def check_docx_package(path: Path) -> None:
    """Raise BriefingError unless `path` is a zip holding a Word document within the limits."""
    with path.open("rb") as handle:
        magic = handle.read(8)
    if magic.startswith(OLE_MAGIC):
        raise BriefingError(
            f"{path}: is password-protected (encrypted) or an old Word .doc file; open it in "
            "Word, remove the password or use File > Save As > Word Document (.docx), then "
            "import that copy"
        )
    if not magic.startswith(ZIP_MAGIC):
        raise BriefingError(f"{path}: is not a Word document (.docx), whatever its name says")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise BriefingError(f"{path}: is larger than a briefing can be ({MAX_FILE_BYTES:,} bytes)")
    try:
        with zipfile.ZipFile(path) as package:
            entries = package.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise BriefingError(f"{path}: is damaged and cannot be opened ({error})") from None
    if len(entries) > MAX_PARTS:
        raise BriefingError(
            f"{path}: holds {len(entries):,} parts, more than a Word document has "
            f"(at most {MAX_PARTS:,}); it was not opened"
        )
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > MAX_UNPACKED_BYTES:
        raise BriefingError(
            f"{path}: would unpack to {unpacked:,} bytes, more than a briefing can be "
            f"(at most {MAX_UNPACKED_BYTES:,}); it was not opened"
        )
    xml = sum(e.file_size for e in entries if e.filename.endswith((".xml", ".rels")))
    if xml > MAX_XML_BYTES:
        raise BriefingError(
            f"{path}: holds {xml:,} bytes of document text, far more than a briefing "
            f"(at most {MAX_XML_BYTES:,}); it was not opened"
        )
    if any(entry.flag_bits & 0x1 for entry in entries):
        raise BriefingError(f"{path}: is encrypted; save an unprotected copy and import that")
    names = {entry.filename for entry in entries}
    if "word/document.xml" not in names or "[Content_Types].xml" not in names:
        raise BriefingError(f"{path}: is a zip file but not a Word document (.docx)")
