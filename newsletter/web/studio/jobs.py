"""Sends running in the background: started, watched and stopped from the studio's pages.

Each send is its own process (`send_job.py`), so closing the tab, or the
browser, does not stop it; its output goes to var/studio/sends/ID.out (the
JSON result) and ID.err (messages). Progress is read from the delivery
ledger, which the send itself keeps, so the page shows the truth even for a
send started before the studio was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.core.errors import NewsletterError

SENDS_DIR = "var/studio/sends"


@dataclass(frozen=True)
class JobOutcome:
    """How a finished send ended: its exit code, its JSON result and its messages."""

    exit_code: int | None
    result: dict[str, Any] | None
    messages: str

    @property
    def stopped(self) -> bool:
        return self.exit_code in (130, 143)


class SendJobs:
    """The send processes this studio started, one per issue at most."""

    def __init__(self, root_dir: Path) -> None:
        self.root_dir = root_dir
        self.folder = root_dir / SENDS_DIR
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def _file(self, issue_id: str, suffix: str) -> Path:
        return self.folder / f"{issue_id}.{suffix}"

    def running(self, issue_id: str) -> bool:
        with self._lock:
            process = self._processes.get(issue_id)
            return process is not None and process.poll() is None

    def start(self, issue_id: str) -> None:
        """Start sending `issue_id` in the background; NewsletterError if it is already going."""
        with self._lock:
            process = self._processes.get(issue_id)
            if process is not None and process.poll() is None:
                raise NewsletterError(f"{issue_id} is already being sent")
            self.folder.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "newsletter.web.studio.send_job"]
            with (
                self._file(issue_id, "out").open("wb") as out,
                self._file(issue_id, "err").open("wb") as err,
            ):
                self._processes[issue_id] = subprocess.Popen(
                    [*command, str(self.root_dir), issue_id],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # Ctrl-C on the studio's terminal does not cut it short
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )

    def stop(self, issue_id: str) -> bool:
        """Ask the send to stop as Ctrl-C does: it finishes the messages in flight and records them."""
        with self._lock:
            process = self._processes.get(issue_id)
            if process is None or process.poll() is not None:
                return False
            process.send_signal(signal.SIGINT)
            return True

    def outcome(self, issue_id: str) -> JobOutcome | None:
        """How the last send of `issue_id` this studio started ended (None: none, or running)."""
        with self._lock:
            process = self._processes.get(issue_id)
            if process is None or process.poll() is None:
                return None
            code = process.returncode
        result = None
        try:
            result = json.loads(self._file(issue_id, "out").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = None
        try:
            messages = self._file(issue_id, "err").read_text(encoding="utf-8", errors="replace")
        except OSError:
            messages = ""
        return JobOutcome(code, result if isinstance(result, dict) else None, messages[-4000:])
