"""Markdown in content, turned into safe HTML or plain text.

Content is written by comms officers, not trusted HTML: markdown-it runs with
raw HTML disabled, so a `<script>` typed into a bullet comes out escaped, and
only https:/mailto: link targets survive.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

_SAFE_SCHEMES = ("https:", "mailto:")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})

    def validate_link(url: str) -> bool:
        return url.strip().lower().startswith(_SAFE_SCHEMES)

    md.validateLink = validate_link  # type: ignore[method-assign]
    return md


def markdown_inline(text: str) -> Markup:
    """One line of Markdown (bold, italics, links) as HTML without a wrapping <p>."""
    return Markup(_parser().renderInline(text))


def markdown_block(text: str) -> Markup:
    """Paragraphs and lists of Markdown as HTML."""
    return Markup(_parser().render(text))


_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1|(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\3(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>])")


def markdown_plain(text: str) -> str:
    """Markdown as plain text for the text part: emphasis marks dropped, links written out."""
    text = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = _EMPHASIS.sub(lambda m: m.group(2) or m.group(4), text)
    return _ESCAPE.sub(r"\1", text)
