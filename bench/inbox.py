"""How `newsletter inbox`'s time grows: with the bounces in one poll, and with a report's size.

    PYTHONPATH=. python bench/inbox.py                           # N = 300, 1,200, 3,000; 5 rounds
    PYTHONPATH=. python bench/inbox.py --bounces 300 1200 3000 --rounds 5 --trees OLD NEW
    PYTHONPATH=. python bench/inbox.py --blocks 1000 2000 4000   # one forged report's size

A poll (the default): the sample project, its issue recorded in the ledger
as sent to N people (as `send` records it, with keyed Message-IDs), and a
Maildir of N genuine hard-bounce DSNs, one per person, each delivered to
that message's signed return path (`bounces+TOKEN@example.org`) and quoting
its Message-ID, so every one verifies as ours. Each round runs
`newsletter --root P inbox --maildir M` as a person types it (a new process
through the console script) for each N and each checkout named by
`--trees` (its code first on PYTHONPATH), taking turns, from the same
starting state each time: the sample's suppressed.csv and a ledger holding
only the deliveries. A poll must suppress all N or the bench stops. The
figure is seconds per poll, median (min-max), and the time per bounce, which
stays flat when the poll is linear.

`--blocks`: a forged delivery report (RFC 3464) naming N recipients, timed
through parsing, classifying and verifying against a ledger that knows
nothing, the path every hostile report takes (no list change, one record).
Before the recipient blocks were capped, 1,000 blocks took 4 s and 4,000 took 48 s.
"""

from __future__ import annotations

import argparse
import compileall
import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rounds import MIN_ROUNDS, interleaved, machine_line, median_range

from newsletter.audience.lists import Recipient
from newsletter.core.project import init_project, open_project
from newsletter.core.settings import Secret
from newsletter.core.signing import return_path_token, tagged_return_path
from newsletter.inbox.classify import InboxContext, classify, parse_bytes
from newsletter.inbox.verify import SentMessages, Verifier
from newsletter.ledger.deliveries import Ledger, NewRecipient, Outcome
from newsletter.ledger.inbox_records import LedgerSentMessages
from newsletter.render.message import message_id_for, sender_domain

ISSUE = "2023-05-panel-reports"
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
BOUNCES = "bounces@example.org"
REPO_DIR = Path(__file__).resolve().parents[1]


def person(n: int) -> str:
    return f"reader{n}@example.net"


def hard_bounce(n: int, message_id: str, return_path: str) -> bytes:
    """A Postfix DSN for reader N: delivered to our tagged return path, quoting our Message-ID."""
    address = person(n)
    return (
        f"Return-Path: <>\nX-Original-To: {return_path}\nDelivered-To: {return_path}\n"
        "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\nTo: comms@example.org\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
        f"Message-Id: <bounce.{n}@mail.example.org>\n\n"
        "--B\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"<{address}>: host mx.example.net said: 550 5.1.1 User unknown\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mail.example.org\nX-Postfix-Sender: rfc822; {return_path}\n\n"
        f"Final-Recipient: rfc822; {address}\nOriginal-Recipient: rfc822;{address}\n"
        "Action: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.example.net\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{address}>: User unknown\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        f"Return-Path: <{return_path}>\nFrom: comms@example.org\nTo: {address}\n"
        f"Subject: News Update\nMessage-ID: {message_id}\nX-Newsletter-Issue: {ISSUE}\n\n"
        "--B--\n"
    ).encode()


def make_poll(work: Path, counts: list[int]) -> tuple[Path, dict[int, Path]]:
    """The project (ledger saved aside as `pristine`) and a Maildir of N bounces per count."""
    root = work / "project"
    init_project(root)
    settings = open_project(root, environment_with_secret()).settings
    secret = Secret(SECRET)
    domain = sender_domain(settings)
    people = range(max(counts))
    ids = {n: message_id_for(ISSUE, person(n), domain, secret) for n in people}
    with Ledger(settings.ledger_path) as ledger:
        ledger.add_recipients(
            ISSUE, [NewRecipient(Recipient(person(n), ""), None, message_id=ids[n]) for n in people]
        )
        rows = ledger.claim(ISSUE, "bench", len(ids), now=0, max_run_attempts=1)
        ledger.record(ISSUE, [(Outcome(row.address_key, "sent"), row.message_id) for row in rows])
    shutil.copytree(settings.ledger_path.parent, work / "pristine-ledger")
    shutil.copy2(root / "recipients" / "suppressed.csv", work / "pristine-suppressed.csv")
    boxes = {}
    for count in counts:
        box = mailbox.Maildir(work / f"bounces-{count}", create=True)
        for n in range(count):
            token = return_path_token(SECRET, ISSUE, person(n))
            box.add(hard_bounce(n, ids[n], tagged_return_path(BOUNCES, token)))
        box.close()
        boxes[count] = work / f"bounces-{count}"
    return root, boxes


def environment_with_secret() -> dict[str, str]:
    return {**os.environ, "NEWSLETTER_UNSUBSCRIBE_SECRET": SECRET}


def newsletter_command() -> list[str]:
    """The console script a person runs, or `python -m newsletter` where it is not installed."""
    script = Path(sys.executable).parent / "newsletter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "newsletter"]


def poll_run(work: Path, root: Path, tree: Path, maildir: Path, count: int) -> Callable[[], float]:
    """Seconds for one `newsletter inbox --maildir` poll of `count` bounces, from the start state."""
    environ = environment_with_secret()
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    command = [*newsletter_command(), "--root", str(root), "inbox", "--maildir", str(maildir)]
    ledger_dir = open_project(root, environ).settings.ledger_path.parent
    expected = f"hard bounces: {count} ({count} added to the suppression list)"

    def run() -> float:
        shutil.rmtree(ledger_dir)
        shutil.copytree(work / "pristine-ledger", ledger_dir)
        shutil.copy2(work / "pristine-suppressed.csv", root / "recipients" / "suppressed.csv")
        start = time.perf_counter()
        done = subprocess.run(command, env=environ, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or expected not in done.stdout.splitlines():
            raise SystemExit(
                f"{tree}: the poll did not suppress {count}:\n{done.stdout}\n{done.stderr}"
            )
        return elapsed

    return run


def bench_poll(counts: list[int], rounds: int, trees: list[Path] | None) -> None:
    print(machine_line())
    if rounds < MIN_ROUNDS:
        print(f"{rounds} round(s): a trial, not a figure")
    work = Path(tempfile.mkdtemp(prefix="newsletter-bench-inbox-"))
    try:
        root, boxes = make_poll(work, counts)
        contenders: dict[str, Callable[[], float]] = {}
        for tree in trees or [REPO_DIR]:
            # As pip does on install: without bytecode every run would compile first.
            compileall.compile_dir(tree / "newsletter", quiet=1)
            label = "" if trees is None else f"{tree.name}, "
            for count in counts:
                name = f"{label}{count} bounces"
                contenders[name] = poll_run(work, root, tree, boxes[count], count)
        seconds = interleaved(rounds, contenders)
        print(f"{rounds} rounds, interleaved; seconds per poll, median (min-max)")
        width = max(len(name) for name in seconds) + 1
        for name, values in seconds.items():
            count = int(name.rsplit(" ", 2)[-2])
            per_bounce = [1000 * s / count for s in values]
            print(
                f"{name + ':':{width}} {median_range(values, '{:.2f}')} s; "
                f"{median_range(per_bounce, '{:.2f}')} ms a bounce"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def forged_report(blocks: int) -> bytes:
    recipients = "".join(
        f"Final-Recipient: rfc822; reader{n}@example.org\nAction: failed\nStatus: 5.1.1\n\n"
        for n in range(blocks)
    )
    return (
        "From: attacker@evil.example\nTo: bounces@example.org\nSubject: x\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
        f"{recipients}--B--\n"
    ).encode()


def bench_report_size(block_counts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sent = LedgerSentMessages(Path(folder) / "ledger.sqlite3")
        lookups = SentMessages(sent.issue_ids, sent.was_sent, sent.recipient_of)
        verifier = Verifier("bench-secret", "news.example.org", "example.org", lookups)
        context = InboxContext("unsubscribe@example.org", "example.org")
        for blocks in block_counts:
            raw = forged_report(blocks)
            start = time.perf_counter()
            message = parse_bytes(raw)
            checked = verifier.check(classify(message, context), message)
            elapsed = time.perf_counter() - start
            unverified = sum(1 for e in checked.events if not e.verified)
            print(
                f"{blocks:>6} recipient blocks ({len(raw) / 1024:.0f} KiB): {elapsed * 1000:.1f} ms, "
                f"{len(checked.events)} events read, {unverified} unverified"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bounces", type=int, nargs="+", default=[300, 1200, 3000])
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument(
        "--trees", nargs="+", type=Path, help="checkouts to time (default: this one)"
    )
    parser.add_argument(
        "--blocks", type=int, nargs="+", help="time one forged report of this many blocks instead"
    )
    args = parser.parse_args()
    if args.blocks:
        bench_report_size(args.blocks)
    else:
        bench_poll(args.bounces, args.rounds, args.trees)


if __name__ == "__main__":
    main()
