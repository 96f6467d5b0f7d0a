"""Adding and removing addresses on suppressed.csv: atomic, no duplicates, readable by audience."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from newsletter.audience.lists import read_suppressed
from newsletter.audience.suppression import (
    add_suppression,
    is_suppressed,
    remove_suppression,
    suppression_reason,
)
from newsletter.core.errors import NewsletterError


def test_add_appends_a_row_the_audience_reader_understands(project_dir: Path) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    before = path.read_text(encoding="utf-8")
    assert add_suppression(path, "New.Bounce@example.org", "hard-bounce", date(2023, 6, 1))
    after = path.read_text(encoding="utf-8")
    assert after.startswith(before.rstrip("\n"))
    assert after.endswith("New.Bounce@example.org,2023-06-01,hard-bounce\n")
    suppressed, problems = read_suppressed(path)
    assert problems == []
    assert suppressed["new.bounce@example.org"].reason == "hard-bounce"


def test_an_address_is_never_listed_twice(project_dir: Path) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    # Already there (as E.Walsh@Example.com): compared case-insensitively.
    assert not add_suppression(path, "e.walsh@example.com", "hard-bounce", date(2023, 6, 1))
    assert add_suppression(path, "x@example.org", "manual", "2023-06-01")
    assert not add_suppression(path, "X@EXAMPLE.ORG", "unsubscribed", "2023-06-02")
    text = path.read_text(encoding="utf-8").lower()
    assert text.count("x@example.org") == 1
    assert text.count("e.walsh@example.com") == 1


def test_remove_takes_the_address_off(project_dir: Path) -> None:
    path = project_dir / "recipients" / "suppressed.csv"
    assert remove_suppression(path, "e.walsh@EXAMPLE.com")
    assert not is_suppressed(path, "E.Walsh@Example.com")
    assert is_suppressed(path, "k.murphy@example.com")
    assert not remove_suppression(path, "e.walsh@example.com")


def test_a_missing_file_is_created_with_its_header(tmp_path: Path) -> None:
    path = tmp_path / "recipients" / "suppressed.csv"
    assert not remove_suppression(path, "a@example.org")
    assert add_suppression(path, "a@example.org", "unsubscribed", date(2023, 1, 2))
    assert (
        path.read_text(encoding="utf-8")
        == "email,date,reason\na@example.org,2023-01-02,unsubscribed\n"
    )


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    add_suppression(path, "a@example.org", "manual", "2023-01-02")
    remove_suppression(path, "a@example.org")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suppressed.csv", "suppressed.csv.lock"]


def test_concurrent_additions_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"

    def add(i: int) -> None:
        add_suppression(path, f"person{i}@example.org", "hard-bounce", "2023-01-02")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    suppressed, _ = read_suppressed(path)
    assert len(suppressed) == 30


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("a@example.org", "asked\nX-Evil: 1"),
        ("a@example.org", " "),
        ("a@example.org\nevil@example.org", "manual"),
        ("", "manual"),
    ],
)
def test_refuses_bad_reasons_and_addresses(tmp_path: Path, address: str, reason: str) -> None:
    with pytest.raises(NewsletterError):
        add_suppression(tmp_path / "suppressed.csv", address, reason, "2023-01-02")


def _add_many(path: str, prefix: str, count: int, start: Any, results: Any) -> None:
    """Run in another process: add `count` addresses, as `serve` or `dispatch` would."""
    start.wait()  # every process begins at the same moment, so their writes overlap
    added = 0
    for n in range(count):
        added += add_suppression(Path(path), f"{prefix}{n}@example.org", "one-click", "2023-01-02")
    results.put(added)


def test_concurrent_additions_from_several_processes_are_all_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    add_suppression(path, "first@example.org", "manual", "2023-01-01")
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    # Two processes race over the same 60 addresses, two over their own.
    prefixes = ("shared", "shared", "a", "b")
    processes = [
        context.Process(target=_add_many, args=(str(path), prefix, 60, start, results))
        for prefix in prefixes
    ]
    for process in processes:
        process.start()
    added = sum(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert added == 180
    suppressed, problems = read_suppressed(path)
    assert problems == []
    assert len(suppressed) == 181
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 182 and lines[0] == "email,date,reason"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suppressed.csv", "suppressed.csv.lock"]


def test_removal_limited_to_a_reason_never_undoes_another_reason(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    add_suppression(path, "click@example.org", "one-click", "2023-01-02")
    add_suppression(path, "bounce@example.org", "hard-bounce", "2023-01-02")

    assert not remove_suppression(path, "bounce@example.org", only_reason="one-click")
    assert suppression_reason(path, "BOUNCE@example.org") == "hard-bounce"
    assert remove_suppression(path, "Click@Example.org", only_reason="one-click")
    assert suppression_reason(path, "click@example.org") is None
    assert not remove_suppression(path, "click@example.org", only_reason="one-click")
