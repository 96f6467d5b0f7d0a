"""Time the whole send command of two git revisions side by side, interleaved, in one run.

    python bench/compare_revisions.py 529becb HEAD --rounds 5 --messages 3000

Each revision is checked out into its own `git worktree` (in a temporary
folder, removed afterwards); this checkout's `bench/dispatch.py --trees`
then times `newsletter send --send` from each, taking turns in every round
with a bare smtplib loop, so the figures of both revisions and the loop come
from the same minutes of the same machine. Needs what bench/dispatch.py
needs (Postfix's smtp-sink, or aiosmtpd); all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rounds import check_rounds

REPO_DIR = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="a git revision, e.g. the commit before a change")
    parser.add_argument("after", help="a git revision, e.g. HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    check_rounds(args.rounds)
    with tempfile.TemporaryDirectory(prefix="newsletter-compare-") as scratch:
        trees = []
        for revision in (args.before, args.after):
            tree = Path(scratch) / re.sub(r"\W", "_", revision)
            subprocess.run(
                ["git", "-C", str(REPO_DIR), "worktree", "add", "--detach", str(tree), revision],
                check=True,
                capture_output=True,
            )
            trees.append(tree)
        try:
            bench = [sys.executable, str(REPO_DIR / "bench" / "dispatch.py")]
            bench += ["--messages", str(args.messages), "--rounds", str(args.rounds)]
            bench += ["--memory-recipients", "0", "--trees", *map(str, trees)]
            subprocess.run(bench, check=True)
        finally:
            for tree in trees:
                subprocess.run(
                    ["git", "-C", str(REPO_DIR), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )


if __name__ == "__main__":
    main()
