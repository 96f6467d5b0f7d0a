"""Run many `newsletter` commands in one process, each with its own output, as a terminal shows it.

    python -m tests.support.cli_batch CASES.json RESULTS.json

CASES.json is a list of {"cwd": ..., "args": [...]}. Each case runs the real
entry point (`newsletter.cli.main`, what the console script and `python -m
newsletter` call) in its working directory, with file descriptors 1 and 2
pointed at one file, so everything the case prints lands there: click's
output, logging, warnings, a thread's exception report. An exception that
escapes `main` is printed as the interpreter would print it at exit
(`Traceback (most recent call last): ...`, exit code 1), so a check for
tracebacks sees exactly what a person would.

Why: starting Python and importing the package costs about a second per
command on a busy machine; a sweep of ~90 commands pays it once per batch.
Commands that run until stopped (preview, serve) need a real process each.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any


def run_case(cwd: str, args: list[str]) -> dict[str, Any]:
    """Run `newsletter ARGS` in `cwd`; its exit code and everything it printed."""
    from newsletter.cli import main

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        os.dup2(captured.fileno(), 2)
        sys.argv = ["newsletter", *args]
        try:
            os.chdir(cwd)
            main()
            code: Any = 0
        except SystemExit as stop:
            code = stop.code if stop.code is not None else 0
        except BaseException:  # what the interpreter would print and exit 1 for
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        captured.seek(0)
        output = captured.read().decode("utf-8", errors="replace")
    if not isinstance(code, int):  # sys.exit("message") prints it and exits 1
        output += f"{code}\n"
        code = 1
    return {"code": code, "output": output}


def main() -> None:
    cases_path, results_path = Path(sys.argv[1]), Path(sys.argv[2])
    cases = json.loads(cases_path.read_text(encoding="utf-8"))
    results = [run_case(case["cwd"], case["args"]) for case in cases]
    results_path.write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main()
