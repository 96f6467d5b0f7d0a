"""Small hostile YAML files (alias bombs, deep nesting) are refused as located errors.

The commands run as real subprocesses under an address-space limit
(RLIMIT_AS), so a file that still expanded would die of MemoryError instead
of passing; the generous timeout only stops a hung run. No timing is asserted.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from newsletter.core.yamlfile import MAX_ALIASED_VALUES, MAX_DEPTH, parse_yaml
from tests.support.project import ISSUE, edit_issue, speed_up

PATH = Path("issues/bomb.yaml")
MEMORY_LIMIT = 1024**3  # the CLI needs a few hundred MB; a billion strings need far more
TIMEOUT = 120

# 342 bytes: nine levels of nine aliases, 9**9 (387 million) strings once expanded.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
DEEP = "[" * 1000 + "]" * 1000 + "\n"


@contextmanager
def memory_ceiling(extra: int = 512 * 1024**2) -> Iterator[None]:
    """Let this process grow by at most `extra` bytes, so a regression fails instead of
    eating the machine's memory (MemoryError), then lift the ceiling again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    ceiling = in_use + extra if hard == resource.RLIM_INFINITY else min(in_use + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def problems(text: str) -> list[str]:
    with memory_ceiling():
        doc = parse_yaml(text, PATH)
    assert doc.data is None
    return [str(p) for p in doc.problems]


def test_an_alias_bomb_is_refused_where_the_aliases_exceed_the_budget() -> None:
    assert len(ALIAS_BOMB.encode()) < 400
    # Line 5 (`e:`) is the first whose aliases repeat more than 10,000 values: 9**4 * 9 * ...
    assert problems(ALIAS_BOMB) == [
        f"{PATH}:5:8: aliases (*name) in this file repeat more than {MAX_ALIASED_VALUES:,} "
        "values in all by here (*d); write the values out, or repeat smaller blocks"
    ]


def test_deep_nesting_is_refused_at_the_first_level_too_deep() -> None:
    assert problems(DEEP) == [
        f"{PATH}:1:{MAX_DEPTH + 1}: the data is nested more than {MAX_DEPTH} levels deep here, "
        "far more than a newsletter file needs; check the brackets and the indentation"
    ]
    block = "a:\n" + "".join("  " * level + f"k{level}:\n" for level in range(1, 100))
    [problem] = problems(block)
    assert problem.startswith(f"{PATH}:{MAX_DEPTH}:") and "levels deep" in problem


def test_an_alias_inside_its_own_block_is_refused() -> None:
    assert problems("links: &links [one, *links]\n") == [
        f"{PATH}:1:21: the alias *links is inside the block &links it repeats, "
        "so it would repeat forever"
    ]


def test_merge_keys_that_double_each_time_are_refused() -> None:
    text = "m0: &m0 {a: 1, b: 2}\n" + "".join(
        f"m{n}: &m{n} {{<<: [*m{n - 1}, *m{n - 1}]}}\n" for n in range(1, 40)
    )
    [problem] = problems(text)
    assert re.match(rf"{PATH}:\d+:\d+: aliases \(\*name\) in this file repeat more than", problem)


def test_aliases_that_nest_too_deep_between_them_are_refused() -> None:
    # Each block is 30 levels deep and holds the one before: few values, but deep once expanded.
    text = "b0: &b0 " + "[" * 30 + "1" + "]" * 30 + "\n"
    text += "".join(
        f"b{n}: &b{n} " + "[" * 30 + f"*b{n - 1}" + "]" * 30 + "\n" for n in range(1, 50)
    )
    [problem] = problems(text)
    assert problem.startswith(f"{PATH}:3:") and f"more than {MAX_DEPTH} levels deep" in problem


def test_ordinary_anchors_aliases_and_merge_keys_still_load() -> None:
    text = (
        "defaults: &defaults {agency: health, role: practitioner}\n"
        "nurse: {<<: *defaults, district: North}\n"
        "links: &links [https://example.org/a, https://example.org/b]\n"
        "again: *links\n"
        "nested: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"  # one level below
    )
    doc = parse_yaml(text, PATH)
    assert doc.problems == ()
    assert doc.data["nurse"] == {"agency": "health", "role": "practitioner", "district": "North"}
    assert doc.data["again"] == ["https://example.org/a", "https://example.org/b"]
    assert doc.where("again", 1) == (3, 39)  # an alias's values are located at the anchor


# -- the commands, as real processes with a memory ceiling ----------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def newsletter(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(project_dir), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=_limit_memory,
        env=os.environ.copy(),
        check=False,
    )


def assert_clean(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a run that ended on its own terms: no traceback, no memory or stack error."""
    output = result.stdout + result.stderr
    for crash in ("Traceback", "MemoryError", "RecursionError"):
        assert crash not in output, output[-2000:]
    return output


@pytest.fixture
def bomb_dir(project_dir: Path) -> Path:
    (project_dir / "issues" / "bomb.yaml").write_text(ALIAS_BOMB, encoding="utf-8")
    return project_dir


@pytest.fixture
def deep_segments_dir(project_dir: Path) -> Path:
    path = project_dir / "recipients" / "segments.yaml"
    text = path.read_text(encoding="utf-8")
    old = "lists: [comms, lead-officers, designated-safeguarding-leads]"
    assert text.count(old) == 1
    path.write_text(text.replace(old, "lists: " + DEEP.strip()), encoding="utf-8")
    return project_dir


def test_validate_and_audience_report_the_alias_bomb_with_its_place(bomb_dir: Path) -> None:
    where = f"{bomb_dir / 'issues' / 'bomb.yaml'}:5:8: aliases (*name)"
    for args in (("validate",), ("audience", "bomb")):
        result = newsletter(bomb_dir, *args)
        output = assert_clean(result)
        assert result.returncode == 1, output
        assert where in output


def test_dispatch_sends_the_due_issue_beside_an_alias_bomb(bomb_dir: Path) -> None:
    edit_issue(bomb_dir, approved=True)
    speed_up(bomb_dir)
    result = newsletter(bomb_dir, "dispatch", "--now", "2023-05-15T09:00:00+01:00")
    output = assert_clean(result)
    assert result.returncode == 0, output
    assert f"{ISSUE}: finished: 67 sent" in output


def test_every_command_reports_deep_segments_with_their_place(deep_segments_dir: Path) -> None:
    # No approval can be made or checked over broken segments: dispatch reports them.
    where = re.escape(f"{deep_segments_dir / 'recipients' / 'segments.yaml'}:10:") + r"\d+: "
    for args in (
        ("validate",),
        ("audience", ISSUE),
        ("dispatch", "--now", "2023-05-15T09:00:00+01:00"),
    ):
        result = newsletter(deep_segments_dir, *args)
        output = assert_clean(result)
        assert result.returncode == 1, (args, output)
        assert re.search(where + "the data is nested more than", output), args
    assert not (deep_segments_dir / "outbox").exists()  # nothing was sent
    result = newsletter(deep_segments_dir, "schedule", "--now", "2023-05-15T09:00:00+01:00")
    output = assert_clean(result)
    assert result.returncode == 0, output
    assert re.search(rf"{ISSUE} .* invalid .*due, but " + where + "the data is nested", output)
