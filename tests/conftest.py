"""Shared fixtures live in tests/support/, one module per real component."""

from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.support.tls",  # first: other fixture modules import it
    "tests.support.network",
    "tests.support.project",
    "tests.support.smtp",
    "tests.support.providers",
    "tests.support.browser",
    "tests.support.imap",
    "tests.support.bounce_apis",
    "tests.support.serve",
    "tests.support.microsoft",
    "tests.support.notify",
]

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "newsletter"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Two workers per core for `-n auto`: much of the suite waits (on `newsletter`
    subprocesses, SMTP and HTTP servers, Dovecot, Chromium), and a second worker per
    core fills those waits. Measured on 2 cores: 3 min 57 s with 4 workers, 4 min 50 s
    with 2 (BENCHMARKS.md)."""
    return 2 * (os.cpu_count() or 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests marked `slow` first; the rest keep their order (a stable sort).

    With `--dist load` and one test handed out at a time (pyproject.toml's
    addopts), the workers start on the longest tests together and finish on
    short ones, instead of one long test starting late and running alone at
    the end while the other workers sit idle.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package's bytecode once, as an installed package has it.

    Hundreds of tests start `newsletter` as a real process. Where
    PYTHONDONTWRITEBYTECODE is set, as on CI runners and in containers, each
    of those would compile every module it imports from source first. Only
    the main pytest process does this (xdist workers start after it).
    """
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(PACKAGE_DIR, quiet=1)
    # pytest keeps each test module as rewritten for its assertions in
    # __pycache__, unless PYTHONDONTWRITEBYTECODE is set: then every worker of
    # every run rewrites all of them again (3 s of each worker's start). Keep them.
    sys.dont_write_bytecode = False
