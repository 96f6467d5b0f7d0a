"""The dispatch run's process lock and its log."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from newsletter.core.errors import LockHeldError
from newsletter.core.project import open_project
from newsletter.schedule.dispatch import run_dispatch
from newsletter.schedule.dispatch_lock import dispatch_lock
from newsletter.schedule.dispatch_log import append_log, last_logged
from tests.support.project import edit_issue, utc

# --- the lock ----------------------------------------------------------------------


def test_a_second_holder_of_the_lock_is_refused_naming_the_first(tmp_path: Path) -> None:
    lock_path = tmp_path / "var" / "dispatch.lock"
    held = r"another dispatch is already running \(process \d+\)"
    with dispatch_lock(lock_path):
        second = dispatch_lock(lock_path)
        with pytest.raises(LockHeldError, match=held):
            second.__enter__()
    with dispatch_lock(lock_path):  # released when the first block ended
        pass


def test_waiting_for_the_lock_gets_it_once_released(tmp_path: Path) -> None:
    lock_path = tmp_path / "dispatch.lock"
    order: list[str] = []
    first_has_it = threading.Event()
    release = threading.Event()

    def first() -> None:
        with dispatch_lock(lock_path):
            order.append("first in")
            first_has_it.set()
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_has_it.wait(10)
    threading.Timer(0.2, release.set).start()
    with dispatch_lock(lock_path, wait=True):
        order.append("second in")
    thread.join(10)
    assert order == ["first in", "first out", "second in"]


def test_dispatch_refuses_while_another_holds_the_lock(project_dir: Path) -> None:
    edit_issue(project_dir, approved=True)
    project = open_project(project_dir)
    with dispatch_lock(project.settings.lock_path), pytest.raises(LockHeldError):
        run_dispatch(project, now=utc(2023, 8, 1))
    assert not project.settings.dispatch_log_path.exists()


# --- the log ---------------------------------------------------------------------


def test_log_lines_append_and_a_torn_line_is_ignored(tmp_path: Path) -> None:
    log_path = tmp_path / "var" / "dispatch.log"
    append_log(log_path, {"issue": "a", "action": "sent"})
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write('{"issue": "a", "act')  # a crash mid-write
    append_log(log_path, {"issue": "b", "action": "skipped"})
    append_log(log_path, {"issue": "a", "action": "failed", "error": "refused"})
    lines = log_path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"issue": "a", "action": "sent"}
    latest = last_logged(log_path)
    assert latest["a"]["action"] == "failed"
    assert latest["b"]["action"] == "skipped"
