"""CLI commands for archive: filled in by its own change."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
