"""The Jinja2 environment: the project's templates first, then the packaged defaults.

Autoescape is on and undefined names are errors (`StrictUndefined`), so a typo
in a template fails loudly in `render` and `validate` instead of leaving a
blank in an email that has already gone to 5,000 people.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from newsletter.markup import markdown_block, markdown_inline, markdown_plain


def make_environment(template_dirs: Sequence[Path]) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in template_dirs]),
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "xml.j2"),
            disabled_extensions=("txt", "txt.j2"),
            default_for_string=True,
            default=True,
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["markdown"] = markdown_inline
    env.filters["markdown_block"] = markdown_block
    env.filters["markdown_plain"] = markdown_plain
    return env
