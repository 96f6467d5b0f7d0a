"""Write a file all at once: a reader (or a crash) sees the old file or the new, never half.

The text goes to a temporary file in the same directory, is flushed to disk,
and is then moved into place with `os.replace` (or, when the file must not
exist yet, hard-linked with `os.link`, which fails instead of overwriting a
file that appeared in the meantime).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from newsletter.core.errors import NewsletterError


def write_text_atomic(path: Path, text: str, *, overwrite: bool = True) -> None:
    """Write `text` (UTF-8) to `path` in one step; with overwrite=False, refuse an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(temp_name, path.stat().st_mode & 0o777)
        else:  # mkstemp's 0600 would hide a new file from the team's other accounts
            os.chmod(temp_name, 0o644)
        if overwrite:
            os.replace(temp_name, path)
            return
        try:
            os.link(temp_name, path)
        except FileExistsError:
            raise NewsletterError(f"{path} already exists; it was left as it is") from None
    finally:
        Path(temp_name).unlink(missing_ok=True)
