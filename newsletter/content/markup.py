"""Markdown in content, turned into safe HTML, plain text, or a list of its links.

There is one reading of a piece of Markdown: markdown-it's token tree. The
HTML, the plain-text part and the links the content checks look at are all
walked from that tree, so they cannot disagree about what is a link, an
escape, an entity or a list (regexes over the source did: an escaped `\\*`
lost its star in the text part, a link target written with spaces was a link
in the HTML and raw Markdown in the text).

Content is written by comms officers, not trusted HTML: markdown-it runs with
raw HTML disabled, so a `<script>` typed into a bullet comes out escaped. Every
link is parsed, whatever its scheme, so the content checks can name the unsafe
ones; the renderers then keep only targets that `link_problem` accepts
(https: with a website name, mailto:) and show the others' words unlinked.

A field is read either inline (one line: bold, italics, links; the `markdown`
filter) or as blocks (paragraphs and lists; `markdown_block`); the plain-text
and link functions take `block=` so they read a field the way its HTML does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from newsletter.core.checks import link_problem

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token
    from markdown_it.tree import SyntaxTreeNode

# markdown-it (20 ms to import) is imported when some Markdown is first parsed:
# checking an issue whose text holds no link (`_cannot_link`) does without it.

_HR = "----"
_LINKS = {"link": "href", "image": "src"}  # the token types that carry a target, and where


def _is_safe_link(url: str) -> bool:
    """Whether a link target may be linked in an email (the content checks' rule)."""
    return link_problem(url) is None


def _link_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    if not _is_safe_link(str(tokens[idx].attrGet("href") or "")):
        return ""
    result: str = self.renderToken(tokens, idx, options, env)
    return result


def _link_close(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # Links never nest, so the nearest link_open before this is its pair.
    opening = next(t for t in reversed(tokens[:idx]) if t.type == "link_open")
    if not _is_safe_link(str(opening.attrGet("href") or "")):
        return ""
    result: str = self.renderToken(tokens, idx, options, env)
    return result


def _image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    from markdown_it.common.utils import escapeHtml

    token = tokens[idx]
    if not _is_safe_link(str(token.attrGet("src") or "")):
        return escapeHtml(self.renderInlineAsText(token.children or [], options, env))
    result: str = self.image(tokens, idx, options, env)
    return result


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    # Parse every target as a link (markdown-it would leave e.g. javascript:
    # ones as text) so `markdown_links` reports them; safety is decided when
    # rendering, by the same rule the content checks use.
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("link_close", _link_close)
    md.add_render_rule("image", _image)
    return md


def _tree(text: str, *, block: bool) -> SyntaxTreeNode:
    from markdown_it.tree import SyntaxTreeNode

    md = _parser()
    return SyntaxTreeNode(md.parse(text) if block else md.parseInline(text))


# --- HTML ------------------------------------------------------------------


def markdown_inline(text: str) -> Markup:
    """One line of Markdown (bold, italics, links) as HTML without a wrapping <p>."""
    return Markup(_parser().renderInline(text))


def markdown_block(text: str) -> Markup:
    """Paragraphs and lists of Markdown as HTML."""
    return Markup(_parser().render(text))


# --- links -----------------------------------------------------------------


def markdown_links(text: str, *, block: bool = False) -> list[str]:
    """Every link and image target in the Markdown, in order, safe or not.

    Targets are as the HTML would carry them (markdown-it normalises them:
    entities decoded, spaces and non-ASCII percent-encoded).
    """
    if _cannot_link(text):
        return []
    return [_target(node) for node in _tree(text, block=block).walk() if node.type in _LINKS]


def _cannot_link(text: str) -> bool:
    """Whether no reading of `text` can hold a link, so it need not be parsed.

    Not a second reading of Markdown: with raw HTML and linkify off, every
    link markdown-it makes starts at a `[` (inline, reference, image or a
    reference definition) or a `<` (an autolink), and neither can be written
    any other way (an entity or escape is text, never syntax). A test holds
    this against the parser.
    """
    return "[" not in text and "<" not in text


def _target(node: SyntaxTreeNode) -> str:
    return str(node.attrs.get(_LINKS[node.type], ""))


# --- plain text ------------------------------------------------------------


def markdown_plain(text: str, *, block: bool = False) -> str:
    """Markdown as plain text for the text part.

    Emphasis marks are dropped, escapes and entities resolved, and a link is
    written as `words (https://...)` (just the address when the words are the
    address). With `block=True` paragraphs are single lines separated by a
    blank line and lists are `- ` / `1. ` lines, nested ones indented, ready
    for the text part's 78-column wrapping. Inline, a line break in the source
    stays a line break, as markdown-it's HTML keeps it.
    """
    tree = _tree(text, block=block)
    if block:
        return "\n\n".join(_blocks(tree.children))
    return "".join(_inline(inline.children, softbreak="\n") for inline in tree.children)


def _blocks(nodes: Sequence[SyntaxTreeNode]) -> list[str]:
    return [rendered for node in nodes if (rendered := _block(node))]


def _block(node: SyntaxTreeNode) -> str:
    if node.type in {"paragraph", "heading"}:
        return "".join(_inline(inline.children, softbreak=" ") for inline in node.children)
    if node.type in {"bullet_list", "ordered_list"}:
        return _list(node)
    if node.type == "blockquote":
        inner = "\n\n".join(_blocks(node.children))
        return "\n".join(f"> {line}".rstrip() for line in inner.splitlines())
    if node.type in {"code_block", "fence"}:
        return "\n".join(f"    {line}".rstrip() for line in node.content.rstrip("\n").splitlines())
    if node.type == "hr":
        return _HR
    return "\n\n".join(_blocks(node.children))


def _list(node: SyntaxTreeNode) -> str:
    # markdown-it marks a tight list by hiding its items' paragraphs.
    tight = all(
        child.hidden
        for item in node.children
        for child in item.children
        if child.type == "paragraph"
    )
    gap = "\n" if tight else "\n\n"
    start = int(node.attrs.get("start", 1))
    items = []
    for number, item in enumerate(node.children, start):
        marker = f"{number}. " if node.type == "ordered_list" else "- "
        body = gap.join(_blocks(item.children)).splitlines() or [""]
        indent = " " * len(marker)
        lines = [marker + body[0]] + [f"{indent}{line}" if line else "" for line in body[1:]]
        items.append("\n".join(lines).rstrip())
    return gap.join(items)


def _inline(nodes: Sequence[SyntaxTreeNode], *, softbreak: str) -> str:
    return "".join(_inline_node(node, softbreak=softbreak) for node in nodes)


def _inline_node(node: SyntaxTreeNode, *, softbreak: str) -> str:
    if node.type == "softbreak":
        return softbreak
    if node.type == "hardbreak":
        return "\n"
    if node.type in {"link", "image"}:
        words = _inline(node.children, softbreak=softbreak)
        target = _target(node)
        if not _is_safe_link(target):
            return words
        if not words or target in {words, f"mailto:{words}"} or node.markup == "autolink":
            return words or target
        return f"{words} ({target})"
    if node.children:
        return _inline(node.children, softbreak=softbreak)
    return node.content
