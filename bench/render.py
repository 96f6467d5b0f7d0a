"""Benchmark: personalised emails per second, render-once-per-variant vs the naive way.

The naive way runs Jinja2 and premailer for every recipient; the Renderer runs
them once per variant and personalises by joining pre-split strings. Both run
in the same process on the shipped May 2023 issue, for synthetic recipients
spread over its variants in the sample audience's proportions.

    python bench/render.py [--recipients 10000] [--naive 100] [--rounds 5] [--root .]

The two take turns for N rounds (at least 5); prints a Markdown table of the
medians with min-max, and the speed-up of the medians (target: at least 50x).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

from rounds import check_rounds, interleaved, machine_line, median_range

from newsletter.audience.lists import Recipient, Variant, sample_recipients
from newsletter.core.project import open_project
from newsletter.render.variants import Renderer

ISSUE_ID = "2023-05-panel-reports"


def synthetic(count: int, variants: list[tuple[Variant, int]]) -> list[tuple[Recipient, Variant]]:
    """`count` recipients, assigned to variants in proportion to the real counts."""
    weighted = [v for v, n in variants for _ in range(max(n, 1))]
    return [
        (Recipient(f"person{i}@example.org", f"Person {i}"), variant)
        for i, variant in zip(range(count), itertools.cycle(weighted))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=100, help="recipients to time the naive way")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args()
    rounds = check_rounds(args.rounds)

    project = open_project(args.root)
    issue = project.load_issue(ISSUE_ID)
    samples, counts = sample_recipients(project.audience_source(), issue)
    variants = [(variant, counts.per_variant[key]) for key, (_, variant) in sorted(samples.items())]
    people = synthetic(args.recipients, variants)
    naive_people = people[: args.naive]
    html_bytes: list[int] = []

    def render_once() -> float:
        """Seconds to build a Renderer (rendering each variant) and personalise everyone."""
        started = time.perf_counter()
        renderer = Renderer(project, issue)
        total = 0
        for recipient, variant in people:
            total += len(renderer.personalise(variant, recipient).html)
        seconds = time.perf_counter() - started
        html_bytes.append(total)
        return seconds

    # Naive: Jinja2 + premailer for every recipient (templates stay compiled, as
    # any real implementation would keep them).
    naive_renderer = Renderer(project, issue)

    def render_naively() -> float:
        started = time.perf_counter()
        for recipient, variant in naive_people:
            naive_renderer._cache.clear()
            naive_renderer.personalise(variant, recipient)
        return time.perf_counter() - started

    seconds = interleaved(rounds, {"fast": render_once, "naive": render_naively})
    fast_rates = [len(people) / s for s in seconds["fast"]]
    naive_rates = [len(naive_people) / s for s in seconds["naive"]]
    fast_rate, naive_rate = statistics.median(fast_rates), statistics.median(naive_rates)
    print(machine_line())
    print(
        f"Issue `{issue.id}`, {len(variants)} variants: "
        + ", ".join(f"`{v.key}` ({n} real recipients)" for v, n in variants)
    )
    print(f"{rounds} rounds, interleaved; median (min-max)")
    print()
    print("| Method | Recipients timed | Seconds | Messages/second | Time for 10,000 |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| Render once per variant, then personalise | {len(people):,} "
        f"| {median_range(seconds['fast'])} | {median_range(fast_rates, '{:,.0f}')} "
        f"| {10_000 / fast_rate:.2f} s |"
    )
    print(
        f"| Naive: Jinja2 + premailer per recipient | {len(naive_people):,} "
        f"| {median_range(seconds['naive'])} | {median_range(naive_rates, '{:,.1f}')} "
        f"| {10_000 / naive_rate:.1f} s (extrapolated) |"
    )
    print()
    ratio = fast_rate / naive_rate
    verdict = "meets" if ratio >= 50 else "MISSES"
    print(
        f"Speed-up: **{ratio:,.0f}x** of the medians ({verdict} the 50x target); "
        f"average HTML size {statistics.median(html_bytes) / len(people) / 1024:.1f} KB."
    )


if __name__ == "__main__":
    main()
