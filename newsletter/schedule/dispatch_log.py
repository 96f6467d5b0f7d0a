"""The dispatch log: one JSON line per issue each `newsletter dispatch` run acted on.

Written by the cron run (`dispatch.py`), read back by the schedule (an
issue whose last attempt failed shows as `failed`) and by people reading
what cron did while nobody watched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from newsletter.core.private_files import private_dir, private_opener


def append_log(log_path: Path, entry: Mapping[str, Any]) -> None:
    """Append one JSON line to the dispatch log."""
    private_dir(log_path.parent)
    line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
    # One write call on an O_APPEND file, so a line is never interleaved with another.
    fd = private_opener(log_path, os.O_RDWR | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # end a line left torn by a crash, so this one stands alone
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def last_logged(log_path: Path) -> dict[str, dict[str, Any]]:
    """The most recent dispatch log entry for each issue id (unreadable lines ignored)."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        handle = log_path.open(encoding="utf-8")
    except FileNotFoundError:
        return latest
    with handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash must not hide the rest
            if isinstance(entry, dict) and isinstance(entry.get("issue"), str):
                latest[entry["issue"]] = entry
    return latest
