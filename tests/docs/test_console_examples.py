"""Every `console` example in the README and docs/ runs, as docs/README.md says it will.

Each page's ```console blocks run in order in one fresh copy of the sample
project, with the `newsletter` under test first on PATH; each `$ ` line must
exit 0, or the code its `# exit N` annotation names. The links between pages
and the sections they name are checked too, so moving a page or renaming a heading
never leaves a reader at a dead end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter.core.project import init_project

REPO_DIR = Path(__file__).resolve().parents[2]
PAGES = [REPO_DIR / "README.md", *sorted((REPO_DIR / "docs").glob("*.md"))]
FENCE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECTED_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")


@dataclass(frozen=True)
class Example:
    line: int  # where the command is in the page
    command: str
    exit_code: int


def examples(page: Path) -> list[Example]:
    text = page.read_text(encoding="utf-8")
    found = []
    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        for offset, line in enumerate(block.group(1).splitlines()):
            if line.startswith("$ "):
                expected = EXPECTED_EXIT.search(line)
                code = int(expected.group(1)) if expected else 0
                found.append(Example(first_line + offset, line[2:], code))
    return found


def run_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The checkout under test, not whatever `newsletter` is installed from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH")]))
    env["HOME"] = str(home)
    env["BROWSER"] = "true"  # `--open` never opens a window in a test run
    return env


def test_the_convention_finds_examples_on_the_task_pages() -> None:
    counted = {page.name: len(examples(page)) for page in PAGES}
    for name in ("writing-issues.md", "lists.md", "sending.md", "server.md"):
        assert counted[name] >= 2, f"docs/{name} lost its runnable examples"


@pytest.mark.slow  # a process per example: about fifteen seconds a page
@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if examples(p)],
    ids=lambda p: str(p.relative_to(REPO_DIR)),
)
def test_every_console_example_runs_on_the_sample(page: Path, tmp_path: Path) -> None:
    project = tmp_path / "sample"
    init_project(project)
    env = run_environment(tmp_path / "home")
    shown = page.relative_to(REPO_DIR)
    for example in examples(page):
        result = subprocess.run(
            ["bash", "-c", example.command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == example.exit_code, (
            f"{shown}:{example.line}: `{example.command}` exited {result.returncode}, "
            f"not {example.exit_code}\n{result.stdout}\n{result.stderr}"
        )
        assert "Traceback" not in result.stdout + result.stderr, f"{shown}:{example.line}"


LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_links_between_pages_lead_somewhere(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith("http"):
            continue
        path = (page.parent / target).resolve()
        assert path.is_file(), f"{page.name} -> {target}"


ANCHORED_LINK = re.compile(r"\]\(([^)#\s]*)#([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCED.sub("", page.read_text(encoding="utf-8"))
    return {heading_anchor(h) for h in HEADING.findall(text)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_links_to_a_section_find_the_section(page: Path) -> None:
    for target, anchor in ANCHORED_LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith("http"):
            continue
        linked = (page.parent / target).resolve() if target else page
        if not linked.is_file():
            continue  # a missing page is test_links_between_pages_lead_somewhere's to report
        assert anchor in anchors(linked), f"{page.name} -> {target}#{anchor}: no such heading"


def test_the_readme_stays_a_front_door() -> None:
    readme = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 300
    # The two commands a newcomer runs, as the scripts are named.
    assert "scripts/try-the-sample" in readme and "scripts/run-tests" in readme
    ci = (REPO_DIR / ".ci" / "run").read_text(encoding="utf-8")
    assert "\nscripts/run-tests\n" in ci, ".ci/run must run the README's test command as written"
