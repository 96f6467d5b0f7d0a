"""Reading one piece of Markdown inline text: is it a single link, and is it safe to keep?

Both questions are answered from markdown-it's tokens, the parser the
renderer uses, so the importer and the email agree on what is a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsletter.content.fields import markdown_link_problems
from newsletter.content.importing.text import escape_markdown, one_line
from newsletter.content.markup import markdown_plain


@dataclass(frozen=True)
class SoleLink:
    text: str  # plain text, as the link `text` holds it
    url: str | None  # None when the paper has no address yet ("#" or empty)


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False})
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    return md


def _children(text: str) -> list[Token]:
    tokens = _parser().parseInline(text)
    children = list(tokens[0].children or []) if tokens else []
    while children and children[0].type in {"softbreak", "hardbreak"}:
        children.pop(0)
    while children and children[-1].type in {"softbreak", "hardbreak"}:
        children.pop()
    return children


def sole_link(text: str) -> SoleLink | None:
    """The link, if the Markdown is one link and nothing else (surrounding spaces aside)."""
    children = _children(text.strip())
    if len(children) < 2 or children[0].type != "link_open" or children[-1].type != "link_close":
        return None
    inner = children[1:-1]
    if any(t.type == "link_open" for t in inner):
        return None
    words = "".join(" " if t.type in {"softbreak", "hardbreak"} else t.content for t in inner)
    url = str(children[0].attrGet("href") or "").strip()
    return SoleLink(one_line(words), None if url in {"", "#"} else url)


def safe_markdown(text: str) -> tuple[str, list[str]]:
    """The Markdown, or its words as plain text when it holds links an email may not carry.

    Returns the text to keep and why links were dropped (empty when none were);
    the caller warns, so the words stay and a person adds the right address.
    """
    problems = markdown_link_problems(text)
    if not problems:
        return text, []
    return escape_markdown(markdown_plain(text)), problems
