"""Benchmark: how long a command takes to start and finish, against `mailmerge --help`.

    python bench/startup.py                 # 10 rounds
    python bench/startup.py --rounds 20

Times, as a person at a terminal (or cron, every five minutes) pays them,
`newsletter --help`, `newsletter schedule` and `newsletter validate` on a fresh
copy of the sample project, and `mailmerge --help` (a small click + Jinja2
tool, installed by the `bench` extra) as the yardstick. Each is a new process
started through its console script; they take turns in every round, after one
warm-up round that is not counted (it fills the disk cache and writes the
bytecode an installed package ships with). Prints, per command, the median wall
time and the median CPU time (user + system, which other load on the machine
disturbs less) with min-max, and the ratio of medians to mailmerge.

Targets (issue 21): `--help` and `schedule` within 1.5x of `mailmerge --help`,
`validate` within 3x.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rounds import check_rounds, interleaved, machine_line, median_range

from newsletter.core.project import init_project

BIN_DIR = Path(sys.executable).parent
TARGETS = {"newsletter --help": 1.5, "newsletter schedule": 1.5, "newsletter validate": 3.0}
YARDSTICK = "mailmerge --help"


def console_script(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise SystemExit(f"`{name}` is not installed: pip install -e '.[bench]'")
        return found
    return str(path)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    command: list[str], cwd: Path, env: dict[str, str], cpu: list[float]
) -> Callable[[], float]:
    """A measurement: run `command` once, return its wall time, append its CPU time to `cpu`."""

    def measure() -> float:
        cpu_before = children_cpu()
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False)
        wall = time.perf_counter() - started
        cpu.append(children_cpu() - cpu_before)
        if done.returncode != 0:
            raise SystemExit(
                f"`{' '.join(command)}` exited {done.returncode}:\n{done.stderr.decode(errors='replace')}"
            )
        return wall

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    rounds = check_rounds(args.rounds)
    # An installed package has its bytecode compiled; let the warm-up round write it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    newsletter, mailmerge = console_script("newsletter"), console_script("mailmerge")
    with tempfile.TemporaryDirectory(prefix="newsletter-startup-") as scratch:
        project = Path(scratch) / "sample"
        init_project(project)
        commands = {
            YARDSTICK: [mailmerge, "--help"],
            "newsletter --help": [newsletter, "--help"],
            "newsletter schedule": [newsletter, "schedule"],
            "newsletter validate": [newsletter, "validate"],
        }
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        contenders = {name: timed(cmd, project, env, cpu[name]) for name, cmd in commands.items()}
        interleaved(1, contenders, progress=False)  # warm-up, not counted
        cpu = {name: [] for name in commands}
        contenders = {name: timed(cmd, project, env, cpu[name]) for name, cmd in commands.items()}
        wall = interleaved(rounds, contenders)
    print(machine_line())
    print(f"{rounds} rounds, interleaved, after 1 warm-up round; seconds, median (min-max)")
    print()
    print("| command | wall | CPU (user+sys) | wall ratio | CPU ratio | target |")
    print("|---|---:|---:|---:|---:|---:|")
    base_wall, base_cpu = statistics.median(wall[YARDSTICK]), statistics.median(cpu[YARDSTICK])
    verdicts = []
    for name in commands:
        wall_ratio = statistics.median(wall[name]) / base_wall
        cpu_ratio = statistics.median(cpu[name]) / base_cpu
        target = TARGETS.get(name)
        shown = f"<= {target:g}x" if target else "(yardstick)"
        print(
            f"| `{name}` | {median_range(wall[name])} | {median_range(cpu[name])} "
            f"| {wall_ratio:.2f}x | {cpu_ratio:.2f}x | {shown} |"
        )
        if target:
            verdicts.append(f"{name}: {'meets' if wall_ratio <= target else 'MISSES'} {target:g}x")
    print()
    print("; ".join(verdicts) + " (on the wall-time medians)")


if __name__ == "__main__":
    main()
