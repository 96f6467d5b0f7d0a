"""Read a briefing written in Markdown, through markdown-it (the parser the renderer uses).

Headings, paragraphs, nested lists and tables become blocks; each keeps the
Markdown source of its text, so bold, italics and links pass through as the
author wrote them. Code, and images with no words around them, have no place
in an issue's structure and become OTHER blocks. Places are line numbers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsletter.content.importing.blocks import Block, Kind, Source
from newsletter.content.importing.inline import sole_link
from newsletter.content.importing.read_text import read_text_file


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    return md


def _where(token: Token) -> str:
    return f"line {token.map[0] + 1}" if token.map else "line 1"


def _is_emphasised(inline: Token) -> bool:
    """Whether every word of the paragraph is inside `**...**`."""
    depth, words = 0, False
    for child in inline.children or []:
        if child.type == "strong_open":
            depth += 1
        elif child.type == "strong_close":
            depth -= 1
        elif child.type == "text" and child.content.strip():
            if depth == 0:
                return False
            words = True
        elif child.type not in {"softbreak", "hardbreak"}:
            return False
    return words


def _image_only(inline: Token) -> Token | None:
    children = [c for c in inline.children or [] if c.type != "text" or c.content.strip()]
    if len(children) == 1 and children[0].type == "image":
        return children[0]
    return None


def _paragraph(opening: Token, inline: Token, list_depth: int) -> Block:
    where, text = _where(opening), inline.content
    if list_depth:
        return Block(Kind.BULLET, where, text, list_depth - 1)
    image = _image_only(inline)
    if image is not None:
        alt = "".join(c.content for c in image.children or [])
        return Block(Kind.OTHER, where, f"Image: {alt or 'no description'}", what="an image")
    link = sole_link(text)
    if link is not None:
        return Block(Kind.LINK, where, link.text, url=link.url)
    return Block(Kind.PARAGRAPH, where, text, emphasised=_is_emphasised(inline))


def _table(tokens: list[Token], start: int) -> tuple[Block, int]:
    """The table opening at `start`, and the index after it."""
    rows: list[tuple[str, ...]] = []
    cells: list[str] = []
    index = start + 1
    while tokens[index].type != "table_close":
        token = tokens[index]
        if token.type == "tr_close":
            rows.append(tuple(cells))
            cells = []
        elif token.type == "inline":
            cells.append(token.content.strip())
        index += 1
    return Block(Kind.TABLE, _where(tokens[start]), rows=tuple(rows)), index + 1


def read_markdown(path: Path) -> Source:
    tokens = _parser().parse(read_text_file(path))
    blocks: list[Block] = []
    list_depth = 0
    in_item_paragraph: set[int] = set()  # list depths whose item already has its first paragraph
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.type in {"bullet_list_open", "ordered_list_open"}:
            list_depth += 1
        elif token.type in {"bullet_list_close", "ordered_list_close"}:
            list_depth -= 1
        elif token.type == "list_item_open":
            in_item_paragraph.discard(list_depth)
        elif token.type == "heading_open":
            level = int(token.tag[1:]) - 1
            blocks.append(Block(Kind.HEADING, _where(token), tokens[index + 1].content, level))
        elif token.type == "paragraph_open":
            blocks.append(_paragraph(token, tokens[index + 1], list_depth))
        elif token.type == "table_open":
            table, index = _table(tokens, index)
            blocks.append(table)
            continue
        elif token.type in {"fence", "code_block"}:
            blocks.append(Block(Kind.OTHER, _where(token), token.content, what="a code block"))
        index += 1
    return Source(tuple(blocks))
