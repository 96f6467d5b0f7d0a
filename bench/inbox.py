"""How `newsletter inbox`'s work grows with a returned message's size: it must grow linearly.

    PYTHONPATH=. python bench/inbox.py --blocks 1000 2000 4000

Builds a forged delivery report (RFC 3464) naming N recipients, and times
parsing, classifying and verifying it against a ledger that knows nothing,
the path every hostile report takes (no list change, one record). Before
the recipient blocks were capped, 1,000 blocks took 4 s and 4,000 took 48 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from newsletter.inbox.classify import InboxContext, classify, parse_bytes
from newsletter.inbox.verify import SentMessages, Verifier
from newsletter.ledger.inbox_records import LedgerSentMessages


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, nargs="+", default=[1000, 2000, 4000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sent = LedgerSentMessages(Path(folder) / "ledger.sqlite3")
        lookups = SentMessages(sent.issue_ids, sent.was_sent, sent.recipient_of)
        verifier = Verifier("bench-secret", "news.example.org", "example.org", lookups)
        context = InboxContext("unsubscribe@example.org", "example.org")
        for blocks in args.blocks:
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


if __name__ == "__main__":
    main()
