"""A poll of many bounces (someone back from leave): applied in batches, said message by message.

The list is written and the ledger committed once a batch, not once a
message, but what a person sees must not change: who was suppressed, by
which message, what was already listed or read twice. And a poll killed
part-way must lose no suppression: a message is recorded only after its
suppressions are on disk, so the next poll applies the rest, adding nobody
twice.
"""

from __future__ import annotations

import json
import mailbox
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

import newsletter.inbox.run as inbox_run
from newsletter.audience.suppression import read_suppressed
from newsletter.cli import cli
from newsletter.core.project import init_project, open_project
from newsletter.inbox.run import ledger_events
from newsletter.ledger.list_events import read_list_events
from tests.inbox.bounces import hard_bounce, reader
from tests.inbox.sent import CORPUS_RECIPIENTS, record_sent, sign_with_test_secret

FIXTURES = Path(__file__).parents[1] / "fixtures" / "inbox"
READERS = [reader(n) for n in range(40)]
LISTED = "e.walsh@example.com"  # on the sample's list already, as E.Walsh@Example.com


def returned_mail(path: Path) -> Path:
    """An mbox, in this order: the corpus, then 40 hard bounces with what makes order matter."""
    box = mailbox.mbox(path, create=True)
    for fixture in sorted(FIXTURES.glob("*.eml")):
        box.add(fixture.read_bytes())
    for n, address in enumerate(READERS):
        box.add(hard_bounce(address, f"bounce.{n}"))
        if n == 3:
            box.add(hard_bounce(address, "bounce.3.again"))  # twice, one after the other
    box.add(hard_bounce(READERS[10], "bounce.10.again"))  # twice, far apart
    box.add(hard_bounce(READERS[5], "bounce.5"))  # the same report, read twice
    box.add(hard_bounce(LISTED, "bounce.walsh"))
    box.close()
    return path


def poll(project_dir: Path, mbox: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--root", str(project_dir), "inbox", "--mbox", str(mbox), *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def what_changed(project_dir: Path) -> tuple[bytes, list[object], list[tuple[object, ...]]]:
    """suppressed.csv, the inbox's events and the list events (without their times)."""
    ledger = open_project(project_dir).settings.ledger_path
    left = [
        (e.address, e.action, e.reason, e.source, e.issue_id, e.changed)
        for e in read_list_events(ledger)
    ]
    csv_bytes = (project_dir / "recipients" / "suppressed.csv").read_bytes()
    return csv_bytes, list(ledger_events(ledger)), left


def test_a_poll_of_many_bounces_suppresses_each_once_and_says_what_one_by_one_would(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_with_test_secret(monkeypatch)
    batched = tmp_path / "batched"
    init_project(batched)
    for root in (project_dir, batched):
        record_sent(root, [*CORPUS_RECIPIENTS, *READERS, LISTED])
    mbox = returned_mail(tmp_path / "returned.mbox")
    before = (batched / "recipients" / "suppressed.csv").read_bytes()

    reports = {}
    for root, batch_size in ((project_dir, 1), (batched, 7)):  # message by message; batches
        monkeypatch.setattr(inbox_run, "BATCH_SIZE", batch_size)
        dry_run = poll(root, mbox, "--dry-run")
        assert (root / "recipients" / "suppressed.csv").read_bytes() == before
        assert ledger_events(open_project(root).settings.ledger_path) == []
        reports[batch_size] = (dry_run, poll(root, mbox, "--format", "json"))

    assert reports[7] == reports[1]
    assert what_changed(batched) == what_changed(project_dir)
    dry_run, real = reports[7]
    assert "hard bounces: 51 (48 would be added to the suppression list)" in dry_run
    report = json.loads(real)
    assert report["counts"]["hard-bounce"] == 51
    assert report["counts"]["suppressed"] == 8 + 3 + 1 + 40  # corpus, then the readers
    by_ref = {item["key"]: item for item in report["items"]}
    assert by_ref["message-id:<bounce.3@mail.example.org>"]["suppressed"] == [READERS[3]]
    for again in ("bounce.3.again", "bounce.10.again", "bounce.walsh"):
        item = by_ref[f"message-id:<{again}@mail.example.org>"]
        assert (item["outcome"], item["suppressed"]) == ("acted", [])
    outcomes = Counter(item["outcome"] for item in report["items"])
    assert outcomes["already-processed"] == 1  # bounce.5, read twice
    listed, problems = read_suppressed(batched / "recipients" / "suppressed.csv")
    assert problems == []
    rows = Counter(
        line.split(",")[0].lower()
        for line in (batched / "recipients" / "suppressed.csv").read_text().splitlines()[1:]
    )
    assert set(READERS) <= set(listed) and max(rows.values()) == 1

    again = poll(batched, mbox)
    assert f"already processed: {len(report['items']) - 2} (skipped)" in again  # not the 2 left
    assert what_changed(batched)[0] == what_changed(project_dir)[0]


def tables(ledger: Path) -> set[str]:
    if not ledger.exists():
        return set()
    with closing(sqlite3.connect(f"{ledger.as_uri()}?mode=ro", uri=True)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def listed_addresses(project_dir: Path) -> Counter[str]:
    """How many rows suppressed.csv has for each address (lower-cased)."""
    text = (project_dir / "recipients" / "suppressed.csv").read_text(encoding="utf-8")
    return Counter(line.split(",")[0].lower() for line in text.splitlines()[1:])


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "the poll never got there"
        time.sleep(0.005)


@pytest.mark.slow  # two real polls of 700 bounces
def test_a_poll_killed_after_writing_the_list_loses_nobody_and_the_next_adds_nobody_twice(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_with_test_secret(monkeypatch)
    people = [reader(n) for n in range(700)]  # two batches
    record_sent(project_dir, people)
    box = mailbox.Maildir(tmp_path / "returned", create=True)
    for n, address in enumerate(people):
        box.add(hard_bounce(address, f"bounce.{n}"))
    box.close()
    ledger = open_project(project_dir).settings.ledger_path
    listed_before = listed_addresses(project_dir)
    command = [sys.executable, "-m", "newsletter", "--root", str(project_dir), "inbox"]
    command += ["--maildir", str(tmp_path / "returned")]

    first = subprocess.Popen(
        command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: "inbox_messages" in tables(ledger), first)
        # Hold the ledger: the poll writes the list, then waits here to record; kill it there.
        with closing(sqlite3.connect(ledger, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            wait_for(lambda: len(listed_addresses(project_dir)) > len(listed_before), first)
            first.kill()
            first.wait()
            holder.execute("ROLLBACK")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stdout:
            first.stdout.close()
    assert first.returncode == -9

    written = set(listed_addresses(project_dir)) - set(listed_before)
    recorded = {e["address"] for e in ledger_events(ledger)}
    assert recorded < written  # what is recorded is on the list; some is not recorded yet

    rerun = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    acted, added = 700 - len(recorded), 700 - len(written)
    assert f"hard bounces: {acted} ({added} added to the suppression list)" in rerun.stdout
    rows = listed_addresses(project_dir)
    assert all(rows[address] == 1 for address in people)
    assert sorted(e["address"] for e in ledger_events(ledger)) == sorted(people)
    left = Counter(e.address for e in read_list_events(ledger) if e.action == "suppressed")
    assert all(left[address] == 1 for address in people)

    csv_bytes = (project_dir / "recipients" / "suppressed.csv").read_bytes()
    third = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True)
    assert "already processed: 700 (skipped)" in third.stdout
    assert (project_dir / "recipients" / "suppressed.csv").read_bytes() == csv_bytes
