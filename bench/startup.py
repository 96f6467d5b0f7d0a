"""Benchmark: how long a command takes to start and finish, against `mailmerge --help`.

    python bench/startup.py                     # 10 rounds, this checkout's code
    python bench/startup.py --rounds 20
    python bench/startup.py --compare main      # main's code and this checkout's, interleaved

Times, as a person at a terminal (or cron, every five minutes) pays them,
`newsletter --help`, `newsletter schedule`, `newsletter validate` and
`newsletter render` (no target: it writes the files to look at) on a fresh
copy of the sample project, and `mailmerge --help` (a small click + Jinja2
tool, installed by the `bench` extra) as the yardstick. Each is a new process
started through its console script; they take turns in every round, after one
warm-up round that is not counted (it fills the disk cache and writes the
bytecode an installed package ships with). Prints, per command, the median wall
time and the median CPU time (user + system, which other load on the machine
disturbs less) with min-max, and the ratio of medians to mailmerge.

`validate` keeps work between commands in the user's cache folder (Jinja2's
compiled templates, premailer's inlined HTML, email-validator's answers;
`core/cachefile`), so it is timed three ways: run again on unchanged files;
after an edit (the issue retitled before each run, in a copy of the project,
so the HTML is inlined afresh while the rest is kept), which is what a person
checking their work pays; and with that folder emptied before each run (the
very first run). Each tree gets its own
XDG_CACHE_HOME in the scratch folder, so nothing outside the run is read.

The console script is the installed one, but the code it runs is this
checkout's: PYTHONPATH names the checkout, and before timing the bench asks
the script's own interpreter which `newsletter` it imports, refusing to time
another. `--compare REV` adds a second set of the same commands running REV's
code (a temporary `git worktree`, removed afterwards) on its own copy of the
same sample, all taking turns in each round, so "before" and "after" are
measured under the same load.

Targets (issue 21): `--help` and `schedule` within 1.5x of `mailmerge --help`,
`validate` within 3x.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rounds import check_rounds, interleaved, machine_line, median_range

from newsletter.core.project import init_project

REPO_DIR = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
TARGETS = {
    "--help": 1.5,
    "schedule": 1.5,
    "validate": 3.0,
    "validate, after an edit": 3.0,
    "validate, cache emptied": 3.0,
}
YARDSTICK = "mailmerge --help"
THIS_TREE = "this tree"
# What a tree's commands are called in the tables, and the arguments each runs with.
COMMANDS = {
    "--help": ["--help"],
    "schedule": ["schedule"],
    "validate": ["validate"],
    "validate, after an edit": ["validate"],
    "validate, cache emptied": ["validate"],
    "render": ["render", "2023-05-panel-reports"],
}
# The edit made before each "after an edit" run: the issue's title, as a person
# retitling it would, so both variants' HTML changes and is inlined afresh.
SAMPLE_ISSUE = "2023-05-panel-reports.yaml"
DRAFTS = itertools.count(1)  # shared by the warm-up and the timed rounds: no title twice
TITLE_LINE = re.compile(r"^title: (.*?)(?: \(draft \d+\))?$", re.MULTILINE)
WHICH_NEWSLETTER = "import newsletter.cli; print(newsletter.cli.__file__)"


def console_script(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise SystemExit(f"`{name}` is not installed: pip install -e '.[bench]'")
        return found
    return str(path)


def script_interpreter(script: str) -> str:
    """The interpreter a console script's `#!` line names (the one that runs it)."""
    first = Path(script).read_bytes().split(b"\n", 1)[0].decode()
    if not first.startswith("#!"):
        raise SystemExit(f"{script} has no #! line; cannot tell which Python runs it")
    return first[2:].strip().split()[0]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    cpu: list[float],
    before: Callable[[], None] = lambda: None,
) -> Callable[[], float]:
    """A measurement: run `before` (untimed), then `command` once; return its wall time
    and append its CPU time to `cpu`."""

    def measure() -> float:
        before()
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


def tree_env(
    base: dict[str, str], tree: Path | None, cache_home: Path | None = None
) -> dict[str, str]:
    """`base` with PYTHONPATH naming `tree` alone (None: no PYTHONPATH at all)."""
    env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "XDG_CACHE_HOME")}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    return env


def cache_home_of(project: Path) -> Path:
    return project.with_name(project.name + "-cache")


def check_imports_from(tree: Path, script: str, env: dict[str, str], cwd: Path) -> None:
    """Refuse to time `script` unless, with `env` in `cwd`, it imports `tree`'s newsletter."""
    done = subprocess.run(
        [script_interpreter(script), "-c", WHICH_NEWSLETTER],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = Path(done.stdout.strip()).resolve()
    if not imported.is_relative_to(tree.resolve()):
        raise SystemExit(f"{script} would import {imported}, not the code in {tree}")
    print(f"{tree}: its console script imports {imported}", file=sys.stderr)


@contextmanager
def revision_tree(revision: str, scratch: Path) -> Iterator[Path]:
    """A temporary `git worktree` of `revision`, removed afterwards."""
    tree = scratch / re.sub(r"\W", "_", revision)
    subprocess.run(
        ["git", "-C", str(REPO_DIR), "worktree", "add", "--detach", str(tree), revision],
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(REPO_DIR), "worktree", "remove", "--force", str(tree)],
            check=False,
            capture_output=True,
        )


def empty_cache(cache_home: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(cache_home, ignore_errors=True)


def retitle(project: Path) -> Callable[[], None]:
    """Before each run, a new title in the project's issue: "(draft 1)", "(draft 2)"..."""

    def edit() -> None:
        issue = project / "issues" / SAMPLE_ISSUE
        text = issue.read_text(encoding="utf-8")
        edited, found = TITLE_LINE.subn(rf"title: \1 (draft {next(DRAFTS)})", text, count=1)
        if not found:
            raise SystemExit(f"{issue} has no `title:` line to edit")
        issue.write_text(edited, encoding="utf-8")

    return edit


def edited_copy(project: Path) -> Path:
    """Where the "after an edit" runs work: a copy of `project`, so its edits
    leave the plain `validate` runs' files (and kept work) unchanged."""
    return project.with_name(project.name + "-edited")


def contenders_for(
    trees: dict[str, Path],
    projects: dict[str, Path],
    env: dict[str, str],
    cpu: dict[str, list[float]],
) -> dict[str, Callable[[], float]]:
    newsletter, mailmerge = console_script("newsletter"), console_script("mailmerge")
    contenders = {
        YARDSTICK: timed(
            [mailmerge, "--help"], projects[THIS_TREE], tree_env(env, None), cpu[YARDSTICK]
        )
    }
    for label, tree in trees.items():
        project = projects[label]
        tree_vars = tree_env(env, tree, cache_home_of(project))
        edited = edited_copy(project)
        for name, args in COMMANDS.items():
            where, variables, before = project, tree_vars, lambda: None
            if name.endswith("cache emptied"):
                before = empty_cache(cache_home_of(project))
            elif name.endswith("after an edit"):
                where, before = edited, retitle(edited)
                variables = tree_env(env, tree, cache_home_of(edited))
            row = row_name(name, label, trees)
            contenders[row] = timed([newsletter, *args], where, variables, cpu[row], before)
    return contenders


def row_name(command: str, label: str, trees: dict[str, Path]) -> str:
    shown = f"newsletter {command}"
    return shown if len(trees) == 1 else f"{shown} [{label}]"


def run(rounds: int, trees: dict[str, Path], scratch: Path) -> None:
    # An installed package has its bytecode compiled; let the warm-up round write it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    sample = scratch / "sample"
    init_project(sample)
    projects = {}
    for label, tree in trees.items():
        projects[label] = scratch / ("project-" + re.sub(r"\W", "_", label))
        shutil.copytree(sample, projects[label])
        shutil.copytree(sample, edited_copy(projects[label]))
        tree_vars = tree_env(env, tree, cache_home_of(projects[label]))
        check_imports_from(tree, console_script("newsletter"), tree_vars, projects[label])
    names = [YARDSTICK] + [row_name(c, label, trees) for label in trees for c in COMMANDS]
    cpu: dict[str, list[float]] = {name: [] for name in names}
    interleaved(1, contenders_for(trees, projects, env, cpu), progress=False)  # warm-up
    cpu = {name: [] for name in names}
    wall = interleaved(rounds, contenders_for(trees, projects, env, cpu))
    report(rounds, names, wall, cpu, trees)


def report(
    rounds: int,
    names: list[str],
    wall: dict[str, list[float]],
    cpu: dict[str, list[float]],
    trees: dict[str, Path],
) -> None:
    print(machine_line())
    print(f"{rounds} rounds, interleaved, after 1 warm-up round; seconds, median (min-max)")
    print()
    print("| command | wall | CPU (user+sys) | wall ratio | CPU ratio | target |")
    print("|---|---:|---:|---:|---:|---:|")
    base_wall, base_cpu = statistics.median(wall[YARDSTICK]), statistics.median(cpu[YARDSTICK])
    verdicts = []
    for name in names:
        wall_ratio = statistics.median(wall[name]) / base_wall
        cpu_ratio = statistics.median(cpu[name]) / base_cpu
        command = name.removeprefix("newsletter ").split(" [")[0]
        target = TARGETS.get(command)
        shown = f"<= {target:g}x" if target else ("(yardstick)" if name == YARDSTICK else "")
        print(
            f"| `{name}` | {median_range(wall[name])} | {median_range(cpu[name])} "
            f"| {wall_ratio:.2f}x | {cpu_ratio:.2f}x | {shown} |"
        )
        if target:
            verdicts.append(f"{name}: {'meets' if wall_ratio <= target else 'MISSES'} {target:g}x")
    print()
    print("; ".join(verdicts) + " (on the wall-time medians)")
    if len(trees) > 1:
        before = next(label for label in trees if label != THIS_TREE)
        print()
        print(f"this tree / {before}, ratio of medians (wall, CPU):")
        for command in COMMANDS:
            old, new = row_name(command, before, trees), row_name(command, THIS_TREE, trees)
            ratios = [statistics.median(d[new]) / statistics.median(d[old]) for d in (wall, cpu)]
            print(f"  newsletter {command}: {ratios[0]:.2f}x, {ratios[1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--compare", metavar="REV", help="also time REV's code (e.g. main), interleaved"
    )
    args = parser.parse_args()
    rounds = check_rounds(args.rounds)
    with tempfile.TemporaryDirectory(prefix="newsletter-startup-") as name:
        scratch = Path(name)
        if args.compare is None:
            run(rounds, {THIS_TREE: REPO_DIR}, scratch)
            return
        with revision_tree(args.compare, scratch) as before:
            run(rounds, {args.compare: before, THIS_TREE: REPO_DIR}, scratch)


if __name__ == "__main__":
    main()
