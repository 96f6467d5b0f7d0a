"""Shared parts of the benchmarks: interleaved rounds, medians with ranges, the machine.

Shared machines are noisy, so a figure is never one timing: each bench runs
its contenders in turns (A, B, C, A, B, C, ...) for N rounds and reports the
median with the min and max, and the ratios of medians measured in that run.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

MIN_ROUNDS = 5


def machine_line() -> str:
    """CPUs, CPU model, Python and load: what a reader needs to compare figures."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()} "
        f"on {platform.system()} {platform.release()}; load average {load}"
    )


def check_rounds(rounds: int) -> int:
    if rounds < MIN_ROUNDS:
        raise SystemExit(
            f"--rounds must be at least {MIN_ROUNDS}: one timing on a shared machine says little"
        )
    return rounds


def interleaved(
    rounds: int, contenders: Mapping[str, Callable[[], float]], *, progress: bool = True
) -> dict[str, list[float]]:
    """Each contender's figures over `rounds` rounds, the contenders taking turns in each round."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(1, rounds + 1):
        for name, measure in contenders.items():
            results[name].append(measure())
        if progress:
            print(f"round {round_number}/{rounds} done", file=sys.stderr, flush=True)
    return results


def median_range(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """'median (min-max)' of the values."""
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )
