"""No traceback ever reaches a user: every command, run for real, under things going wrong.

Every command the CLI has (read from the click group, so a new command must
be added to `RUNS` or this fails) is run from the real entry point under
each fault: a template of the project's own with a typo in it, a ledger file
that is not a database, files where the folders it writes should be (root
ignores permissions, and tests may run as root, so a file in the way is what
makes a folder unwritable for everyone), and a project directory that is not
a project. Whatever the exit code, nothing printed may contain a traceback.
The sweep runs a fault's commands one after another in one Python process,
each with its own output and exit code (tests/support/cli_batch.py), so it
pays for starting Python once, not ninety times. Long-running commands
(preview, serve) are real processes, stopped with Ctrl-C once they say they
are listening, as a person would.

The template fault is also checked for what it must say: `path:line` of
the broken template, from render, send and dispatch alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter.cli import cli
from tests.support.project import unapprove_sample

ISSUE = "2023-05-panel-reports"
TYPO = "{{ issue.preheadr }}"
SEND_AT = "2023-05-15T09:00:00+01:00"
REPO_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Place:
    """Where a run happens: the project it names, and a scratch folder beside it."""

    root: Path
    scratch: Path


# Each command with the arguments of a typical use; some more than once.
RUNS: dict[str, list[Callable[[Place], list[str]]]] = {
    "init": [
        lambda p: ["init", "--sample", str(p.scratch / "fresh")],
        lambda p: ["init", "--organisation", "Team", "--from-address", "a@example.org", "new"],
    ],
    "secret": [lambda p: ["secret", "--env-file", str(p.scratch / "newsletter.env")]],
    "validate": [lambda p: ["validate"]],
    "audience": [lambda p: ["audience", ISSUE]],
    "render": [
        lambda p: ["render", ISSUE],
        lambda p: ["render", ISSUE, "--out", str(p.scratch / "a-file" / "out")],
    ],
    "preview": [lambda p: ["preview", ISSUE, "--port", "0"]],
    "send": [
        lambda p: ["send", ISSUE],
        lambda p: ["send", ISSUE, "--send", "--yes"],
        lambda p: ["send", ISSUE, "--test-to", "me@example.org"],
    ],
    "retry": [lambda p: ["retry", ISSUE]],
    "report": [lambda p: ["report", ISSUE]],
    "outbox": [lambda p: ["outbox"], lambda p: ["outbox", "--format", "json"]],
    "dispatch": [lambda p: ["dispatch", "--now", SEND_AT]],
    "schedule": [lambda p: ["schedule"]],
    "cron": [lambda p: ["cron"]],
    "archive": [lambda p: ["archive"]],
    "unsubscribe": [lambda p: ["unsubscribe", "someone@example.org"]],
    "resubscribe": [lambda p: ["resubscribe", "someone@example.org"]],
    "new": [lambda p: ["new", "2023-09-next", "--from", ISSUE]],
    "import": [
        lambda p: ["import", str(REPO_DIR / "issues" / "sources" / "panel-reports-may-2023.txt")]
    ],
    "approve": [lambda p: ["approve", ISSUE, "--by", "Jo Bloggs"]],
    "serve": [lambda p: ["serve", "--port", "0"]],
    "studio": [lambda p: ["studio", "--port", "0", "--no-browser"]],
    "inbox": [lambda p: ["inbox", "--maildir", str(p.scratch / "maildir"), "--dry-run"]],
}
LONG_RUNNING = {"preview", "serve", "studio"}


def break_a_template(root: Path) -> None:
    """A typo in the project's own email template; approved the old way (`approved: true`,
    allowed for a migration), so sending gets as far as rendering (a real approval would
    refuse the changed template first)."""
    template = root / "templates" / "email" / "newsletter.html.j2"
    text = template.read_text(encoding="utf-8")
    assert "</title>" in text
    template.write_text(text.replace("</title>", TYPO + "</title>", 1), encoding="utf-8")
    unapprove_sample(root)
    issue = root / "issues" / f"{ISSUE}.yaml"
    issue.write_text(
        issue.read_text(encoding="utf-8").replace("approved: false", "approved: true"),
        encoding="utf-8",
    )
    settings = root / "newsletter.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8") + "approval:\n  allow_approved_flag: true\n",
        encoding="utf-8",
    )


def corrupt_the_ledger(root: Path) -> None:
    (root / "var").mkdir()
    (root / "var" / "ledger.sqlite3").write_bytes(b"this is not a SQLite database\n" * 200)


def block_the_folders(root: Path) -> None:
    for name in ("var", "outbox", "out", "site"):
        (root / name).write_text("a file where a folder should be\n", encoding="utf-8")


def not_a_project(root: Path) -> None:
    shutil.rmtree(root)
    root.mkdir()


FAULTS: dict[str, Callable[[Path], None]] = {
    "bad template": break_a_template,
    "corrupt ledger": corrupt_the_ledger,
    "folders blocked": block_the_folders,
    "not a project": not_a_project,
}


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH")]))
    return env


def run(place: Place, args: list[str], long_running: bool) -> tuple[int, str]:
    """Run `newsletter --root ROOT ARGS`; (exit code, everything it printed)."""
    command = [sys.executable, "-m", "newsletter", "--root", str(place.root), *args]
    with subprocess.Popen(
        command,
        cwd=place.scratch,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        if not long_running:
            output, _ = process.communicate(timeout=120)
            return process.returncode, output
        lines = []
        for line in process.stdout:  # until it says it listens (or ends)
            lines.append(line)
            if "Ctrl-C" in line:
                process.send_signal(signal.SIGINT)
                break
        rest, _ = process.communicate(timeout=60)
        return process.returncode, "".join(lines) + rest


def prepare(project_dir: Path, base: Path, fault: str) -> Place:
    root = base / "project"
    shutil.copytree(project_dir, root)
    scratch = base / "scratch"
    scratch.mkdir()
    (scratch / "a-file").write_text("not a folder\n", encoding="utf-8")
    for sub in ("cur", "new", "tmp"):
        (scratch / "maildir" / sub).mkdir(parents=True)
    FAULTS[fault](root)
    return Place(root, scratch)


def test_every_command_is_covered() -> None:
    assert set(RUNS) == set(cli.commands), "add the new command to RUNS"


def run_batch(places_and_args: list[tuple[Place, list[str]]], work: Path) -> list[tuple[int, str]]:
    """Run each `newsletter --root ROOT ARGS` in one Python process (tests/support/cli_batch.py).

    Each still starts from the real entry point with its own output and exit code;
    only the interpreter start and the imports are shared.
    """
    cases = [
        {"cwd": str(place.scratch), "args": ["--root", str(place.root), *args]}
        for place, args in places_and_args
    ]
    cases_path, results_path = work / "cases.json", work / "results.json"
    cases_path.write_text(json.dumps(cases), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.cli_batch", str(cases_path), str(results_path)],
        cwd=work,
        env=environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0 and results_path.exists(), done.stdout + done.stderr
    results = json.loads(results_path.read_text(encoding="utf-8"))
    return [(result["code"], result["output"]) for result in results]


@pytest.mark.slow  # about 22 commands per fault, each in a fresh copy of the project
@pytest.mark.parametrize("fault", list(FAULTS))
def test_no_command_shows_a_traceback_whatever_goes_wrong(
    project_dir: Path, tmp_path: Path, fault: str
) -> None:
    jobs = []
    for name, makers in sorted(RUNS.items()):
        for index, make_args in enumerate(makers):
            base = tmp_path / f"{name}-{index}"
            base.mkdir()
            place = prepare(project_dir, base, fault)
            jobs.append((name, place, make_args(place)))
    short = [(place, args) for name, place, args in jobs if name not in LONG_RUNNING]
    long = [(place, args) for name, place, args in jobs if name in LONG_RUNNING]

    # The long-running commands are real processes stopped with Ctrl-C, alongside the batch.
    with ThreadPoolExecutor(max_workers=len(long)) as pool:
        long_runs = [pool.submit(run, place, args, True) for place, args in long]
        results = [*run_batch(short, tmp_path), *(future.result() for future in long_runs)]

    shown = [
        f"[{fault}] newsletter {' '.join(args)} (exit {code}):\n{output}"
        for (_place, args), (code, output) in zip([*short, *long], results, strict=True)
        if "Traceback" in output or code not in (0, 1, 2)
    ]
    assert not shown, "\n\n".join(shown)


@pytest.mark.parametrize(
    "args",
    [
        ["render", ISSUE],
        ["send", ISSUE, "--send", "--yes"],
        ["send", ISSUE, "--test-to", "me@example.org"],
        ["dispatch", "--now", SEND_AT],
    ],
    ids=["render", "send", "test copy", "dispatch"],
)
def test_a_template_typo_is_reported_at_its_line(
    project_dir: Path, tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "run").mkdir()
    place = prepare(project_dir, tmp_path / "run", "bad template")
    template = place.root / "templates" / "email" / "newsletter.html.j2"
    line = next(
        n for n, text in enumerate(template.read_text("utf-8").splitlines(), 1) if TYPO in text
    )

    code, output = run(place, args, long_running=False)

    assert code == 1, output
    assert "Traceback" not in output
    assert re.search(rf"^{re.escape(str(template))}:{line}:\d+: .*preheadr", output, re.M), output
    assert not [p for p in (place.root / "outbox").rglob("*") if p.is_file()]  # nothing sent
    if args[0] == "dispatch":  # cron's log says the same
        log = (place.root / "var" / "dispatch.log").read_text(encoding="utf-8")
        assert f"{template}:{line}:" in log and '"action": "invalid"' in log


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["render", ISSUE, "--out", "{scratch}/a-file/out"],
            "newsletter: cannot write {scratch}/a-file/out (Not a directory); "
            "choose a folder you can write to with --out",
        ),
        (
            ["send", ISSUE, "--send", "--yes"],
            "newsletter: cannot create the delivery ledger {root}/var/ledger.sqlite3",
        ),
        (
            ["send", ISSUE, "--test-to", "me@example.org"],
            "newsletter: the outbox folder {root}/outbox is not a Maildir folder",
        ),
        (
            ["dispatch", "--now", SEND_AT],
            "newsletter: cannot take the dispatch lock {root}/var/dispatch.lock",
        ),
    ],
    ids=["render --out", "send", "test copy", "dispatch"],
)
def test_a_folder_that_cannot_be_written_is_one_line(
    project_dir: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "run").mkdir()
    place = prepare(project_dir, tmp_path / "run", "folders blocked")
    names = {"root": place.root, "scratch": place.scratch}

    code, output = run(place, [a.format(**names) for a in args], long_running=False)

    assert code == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(says.format(**names)), output


def test_cron_dispatch_logs_an_error_that_stops_the_run(project_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    place = prepare(project_dir, tmp_path / "run", "corrupt ledger")

    code, output = run(place, ["dispatch", "--now", SEND_AT], long_running=False)

    assert code == 1 and "Traceback" not in output
    (line,) = output.strip().splitlines()
    assert line.startswith("newsletter: ") and "not a database" in line
    logged = (place.root / "var" / "dispatch.log").read_text(encoding="utf-8")
    assert '"action": "error"' in logged and "not a database" in logged
