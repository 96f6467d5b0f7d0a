"""Run `bench/dispatch.py` for two git revisions side by side, interleaved, and compare.

    python bench/compare_revisions.py 4744ddb HEAD --rounds 5 --messages 2000

The machines are shared and noisy, so the two revisions take turns (A, B, A,
B, ...) in one run and each figure is the median of the rounds, with min and
max. Each revision runs from its own `git worktree` (made in a temporary
folder, removed afterwards) with its own code on PYTHONPATH, so the bench of
each revision measures that revision. Needs what bench/dispatch.py needs
(Postfix's smtp-sink, or aiosmtpd); all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rounds import check_rounds, machine_line

REPO_DIR = Path(__file__).resolve().parents[1]
FIGURES = {
    # "= 880 msg/s" (one round) or "= 880 (850-900) msg/s" (a median of rounds)
    "1 connection msg/s": re.compile(r"newsletter, 1 connection: .*= (\d+)(?: \(\S+\))? msg/s"),
    "4 connections msg/s": re.compile(r"newsletter, 4 connections: .*= (\d+)(?: \(\S+\))? msg/s"),
    "bare smtplib msg/s": re.compile(r"bare smtplib loop: .*= (\d+)(?: \(\S+\))? msg/s"),
    "ratio 1 connection / bare": re.compile(r"ratio 1 connection / bare: +([\d.]+)x"),
    "ratio 4 connections / bare": re.compile(r"ratio 4 connections / bare: +([\d.]+)x"),
}


def run_once(tree: Path, messages: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    script = tree / "bench" / "dispatch.py"
    command = [sys.executable, str(script), "--messages", str(messages)]
    if "--rounds" in script.read_text(encoding="utf-8"):
        command += ["--rounds", "1"]  # the rounds are taken here, interleaving the revisions
    output = subprocess.run(
        [*command, "--memory-recipients", "0"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for name, pattern in FIGURES.items():
        match = pattern.search(output)
        if match is None:
            raise SystemExit(f"{tree}: no `{name}` in the bench output:\n{output}")
        found[name] = float(match.group(1))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="a git revision, e.g. the commit before a change")
    parser.add_argument("after", help="a git revision, e.g. HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    check_rounds(args.rounds)
    results: dict[str, list[dict[str, float]]] = {args.before: [], args.after: []}
    with tempfile.TemporaryDirectory(prefix="newsletter-compare-") as scratch:
        trees = {}
        for revision in (args.before, args.after):
            tree = Path(scratch) / re.sub(r"\W", "_", revision)
            subprocess.run(
                ["git", "-C", str(REPO_DIR), "worktree", "add", "--detach", str(tree), revision],
                check=True,
                capture_output=True,
            )
            trees[revision] = tree
        try:
            for round_number in range(1, args.rounds + 1):
                for revision, tree in trees.items():
                    results[revision].append(run_once(tree, args.messages))
                    print(f"round {round_number}: {revision} done", file=sys.stderr, flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(REPO_DIR), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
    print(machine_line())
    print(f"{args.rounds} rounds, {args.messages} messages each, interleaved; median (min-max)")
    print(f"| figure | {args.before} | {args.after} |")
    print("|---|---:|---:|")
    for name in FIGURES:
        cells = []
        for revision in (args.before, args.after):
            values = [r[name] for r in results[revision]]
            cells.append(f"{statistics.median(values):g} ({min(values):g}-{max(values):g})")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
