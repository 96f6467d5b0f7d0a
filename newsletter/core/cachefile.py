"""Files in the user's cache folder: work done once and kept, so the next command can skip it.

A cache file holds the result of work that can always be done again (a
compiled template, HTML with its CSS inlined), under a key naming everything
the result depends on. A reader gets the result back only when the file is
whole, is ours (owned by this account, writable by nobody else), and was
written under the same key; anything else (no file, a
file from an older input, one cut short by a crash or edited by hand, a folder
that cannot be read) is a miss, and the work is simply done again. So the
cache can be deleted at any time, and a cache that cannot be written (a
read-only home, a full disk) only costs time. Each project has its own folder
(`ProjectPaths.cache_dir`, under `~/.cache/newsletter/`).

Each file is `MAGIC`, the key, the sha256 of the payload, then the payload:
the digest is what lets a truncated or altered file be refused rather than
trusted. The folder is made 0700 and the files 0600 (`private_files`); writes are atomic but not fsynced (`atomicfile`):
losing one to a power cut only means doing the work again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from newsletter.core.atomicfile import write_bytes_atomic
from newsletter.core.private_files import PRIVATE_FILE_MODE, private_dir

MAGIC = b"newsletter cache 1\n"
# Far above anything the package keeps (a compiled template, one email's HTML).
MAX_CACHE_FILE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_KEY = re.compile(r"[0-9a-f]{64}\Z")


def cache_key(*parts: str | bytes) -> str:
    """A key over `parts` (sha256 hex), each part length-prefixed so no two lists collide."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(b"%d:" % len(data))
        digest.update(data)
    return digest.hexdigest()


@functools.cache  # once a process: a library installed meanwhile needs a new process anyway
def library_versions(names: tuple[str, ...]) -> str | None:
    """Each library's installed version and files, found without importing it: part of a key.

    The version comes from the `NAME-VERSION.dist-info` folder beside the
    package; the package folder's inode and time change when it is installed
    again. None when one cannot be told: then nothing should be kept.
    """
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        versions = sorted(p.name for p in package_dir.parent.glob(f"{name}-*.dist-info"))
        if len(versions) != 1:
            return None
        try:
            info = package_dir.stat()
        except OSError:
            return None
        found.append(f"{versions[0]} {package_dir} {info.st_ino} {info.st_mtime_ns}")
    return "\n".join(found)


def _trusted(info: os.stat_result) -> bool:
    """A regular file of ours that nobody else can write: what else is there was not made here."""
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and info.st_size <= MAX_CACHE_FILE_BYTES
    )


@dataclass(frozen=True)
class CacheDir:
    """One folder of cache files; `read` and `write` never raise for a file system problem."""

    directory: Path

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"not a cache file name: {name!r}")
        return self.directory / name

    def read(self, name: str, key: str) -> bytes | None:
        """The payload stored under `name` for `key`; None unless it is there, whole and unaltered."""
        path = self._path(name)
        try:
            info = path.stat()
            if not _trusted(info):
                return None
            data = path.read_bytes()
        except OSError:
            return None
        if not data.startswith(MAGIC):
            return None
        stored_key, _, rest = data[len(MAGIC) :].partition(b"\n")
        digest, _, payload = rest.partition(b"\n")
        if stored_key != key.encode("ascii"):
            return None
        if digest != hashlib.sha256(payload).hexdigest().encode("ascii"):
            return None
        return payload

    def write(self, name: str, key: str, payload: bytes) -> bool:
        """Keep `payload` under `name` for `key`, replacing what was there; False if it could not."""
        if not _KEY.match(key):
            raise ValueError(f"not a cache key: {key!r}")
        path = self._path(name)
        digest = hashlib.sha256(payload).hexdigest().encode("ascii")
        data = b"".join((MAGIC, key.encode("ascii"), b"\n", digest, b"\n", payload))
        try:
            private_dir(self.directory)
            write_bytes_atomic(path, data, mode=PRIVATE_FILE_MODE, durable=False)
        except OSError:
            return False  # read-only or full: the work is done again next time
        return True
