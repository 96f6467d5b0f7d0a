"""Every command explains itself: a command without help text fails here.

The commands are read from the click group at test time, so commands other
parts of the project add later are checked too.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import cli

COMMAND_NAMES = sorted(cli.commands)


def walk(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command under `group`, sub-groups included, with the words that invoke it."""
    found = []
    for name, command in sorted(group.commands.items()):
        found.append(((*prefix, name), command))
        if isinstance(command, click.Group):
            found += walk(command, (*prefix, name))
    return found


def test_the_core_commands_are_registered() -> None:
    assert {"validate", "audience", "init"} <= set(cli.commands)


COMMANDS = walk(cli)


@pytest.mark.parametrize(("words", "command"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_command_has_help_text(words: tuple[str, ...], command: click.Command) -> None:
    assert command.help and command.help.strip(), f"`newsletter {' '.join(words)}` has no docstring"
    assert command.get_short_help_str().strip(), f"`newsletter {' '.join(words)}` has no summary"
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0, result.output
    # click re-wraps the docstring, so compare with the whitespace evened out.
    first_line = " ".join(command.help.strip().splitlines()[0].split())
    assert first_line in " ".join(result.output.split())
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"`newsletter {' '.join(words)}` option {param.opts[0]} has no help"


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert cli.help and cli.help.strip().splitlines()[0] in result.output
    listed = result.output.split("Commands:", 1)[1]
    for name in COMMAND_NAMES:
        assert f"\n  {name} " in listed or f"\n  {name}\n" in listed, name
