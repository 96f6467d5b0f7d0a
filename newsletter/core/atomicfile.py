"""Write a file all at once: a reader (or a crash) sees the old file or the new, never half.

The one writer every file write of the package goes through. The bytes go to
a temporary file in the same directory, are flushed and fsynced, get their
mode, and are then moved into place with `os.replace` (or, when the file must
not exist yet, hard-linked with `os.link`, which fails instead of overwriting
a file that appeared in the meantime); the directory is fsynced last, so a
power cut cannot bring the old file back after a run reported the new one.
A file that is only ever a copy of work that can be done again (`cachefile`)
passes `durable=False` and skips both fsyncs: a torn one is detected and
done again, and a cache write should not wait for the disk.

The mode: `mode` when given (0600 for files naming people, `private_files`),
else the replaced file's own mode, else 0644 (mkstemp's 0600 would hide a
new file from the team's other accounts). A symbolic link at `path` is
replaced, never written through: a caller that means to write through one
(suppressed.csv shared by two projects) passes the resolved target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from newsletter.core.errors import NewsletterError

DEFAULT_FILE_MODE = 0o644


def write_bytes_atomic(
    path: Path,
    data: bytes,
    *,
    overwrite: bool = True,
    mode: int | None = None,
    durable: bool = True,
) -> Path:
    """Write `data` to `path` in one durable step; with overwrite=False, refuse an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), _mode_for(path, mode))
        if overwrite:
            os.replace(temp_name, path)
        else:
            try:
                os.link(temp_name, path)
            except FileExistsError:
                raise NewsletterError(f"{path} already exists; it was left as it is") from None
        if durable:
            fsync_directory(path.parent)
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return path


def write_text_atomic(
    path: Path, text: str, *, overwrite: bool = True, mode: int | None = None
) -> Path:
    """`write_bytes_atomic` for UTF-8 text (written as given: no newline translation)."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite, mode=mode)


def _mode_for(path: Path, mode: int | None) -> int:
    if mode is not None:
        return mode
    try:
        return path.lstat().st_mode & 0o777 if not path.is_symlink() else DEFAULT_FILE_MODE
    except FileNotFoundError:
        return DEFAULT_FILE_MODE


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable: a power cut must not bring back the old file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
