"""docs/reference.md lists everything the program has: every command, setting, variable, exit code.

The reference is where an IT colleague looks a name up, so a command, a
setting or an environment variable added to the code without a line there
fails here, naming what is missing. Each list is read from the code (the
CLI's command table, the declared settings fields, each provider's settings
module) or, for the exit codes, from ARCHITECTURE.md's contract.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter.cli import COMMAND_TABLE
from newsletter.core.envfile import ENV_FILE_VARIABLE, UNSUBSCRIBE_SECRET_ENV
from newsletter.core.paths import ProjectPaths
from newsletter.core.settings import DKIM_DOMAIN_ENV, DKIM_SELECTOR_ENV, declared_fields
from newsletter.inbox.webhooks import PROVIDERS
from newsletter.web.serve_options import webhook_env

REPO_DIR = Path(__file__).resolve().parents[2]
REFERENCE = REPO_DIR / "docs" / "reference.md"


def section(title: str) -> str:
    """The text of the reference's `## title` section, up to the next `## `."""
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def quoted(text: str) -> set[str]:
    """Every `code span` of `text`, as written."""
    return set(re.findall(r"`([^`\n]+)`", text))


def settings_fields() -> list[str]:
    """The dotted names of the settings newsletter.yaml may hold."""
    paths = ProjectPaths(REPO_DIR)
    return sorted({f.key for f in declared_fields(paths) if f.in_file})


def environment_variables() -> list[str]:
    """Every environment variable the program reads."""
    names = {f.env for f in declared_fields(ProjectPaths(REPO_DIR)) if f.env}
    names |= {UNSUBSCRIBE_SECRET_ENV, ENV_FILE_VARIABLE, DKIM_DOMAIN_ENV, DKIM_SELECTOR_ENV}
    names |= {"NEWSLETTER_ROOT"}  # click's --root option reads it
    names |= {
        webhook_env(provider, part) for provider in PROVIDERS for part in ("USERNAME", "PASSWORD")
    }
    return sorted(names)


@pytest.mark.parametrize("command", sorted(COMMAND_TABLE))
def test_every_command_has_a_row(command: str) -> None:
    rows = [
        line
        for line in section("Commands").splitlines()
        if line.startswith("| `")
        and any(span.split()[0] == command for span in quoted(line.split("|")[1]))
    ]
    assert rows, f"docs/reference.md: the commands table has no row for `newsletter {command}`"


@pytest.mark.parametrize("key", settings_fields())
def test_every_setting_is_named(key: str) -> None:
    names = quoted(section("Settings"))
    parts = key.split(".")
    blocks = {".".join(parts[:n]) + ".*" for n in range(1, len(parts))}
    assert key in names or blocks & names, (
        f"docs/reference.md: the settings table names neither `{key}` nor any of {sorted(blocks)}"
    )


@pytest.mark.parametrize("variable", environment_variables())
def test_every_environment_variable_is_named_in_full(variable: str) -> None:
    assert variable in quoted(section("Environment variables")), (
        f"docs/reference.md: the environment variables table does not name `{variable}`"
    )


def architecture_exit_codes() -> list[str]:
    text = (REPO_DIR / "ARCHITECTURE.md").read_text(encoding="utf-8")
    contract = text[text.index("Exit codes:") :]
    contract = contract[: contract.index("\n- ")]
    return sorted(set(re.findall(r"\b\d{1,3}\b", contract)), key=int)


def test_the_exit_codes_are_architectures() -> None:
    codes = architecture_exit_codes()
    assert {"0", "1", "2", "3", "130", "143"} <= set(codes), codes
    rows = section("Exit codes")
    listed = {
        code.strip()
        for line in rows.splitlines()
        if re.match(r"\| \d", line)
        for code in line.split("|")[1].split(",")
    }
    assert listed == set(codes), f"reference.md lists {sorted(listed)}, ARCHITECTURE.md {codes}"
