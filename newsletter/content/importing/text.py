"""Small text helpers shared by the readers and the recogniser.

Word documents carry characters that look like spaces or quotes but compare
unequal to them (non-breaking spaces, curly quotes, zero-width marks); the
words a person reads must decide what matches, so `cleaned` removes the
invisible ones and `comparable` folds the look-alikes for comparisons only;
the text that goes into the issue keeps its curly quotes.
"""

from __future__ import annotations

import re
import unicodedata

from newsletter.content.markup import markdown_plain

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\u2009\u200a\u3000"), " ")
_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"'})
_DASHES = str.maketrans({"–": "-", "—": "-", "‐": "-", "‑": "-"})
# Characters that would start Markdown syntax inside a line of plain text.
_MARKDOWN_SPECIAL = frozenset("\\`*_[]<")
_ENTITY = re.compile(r"&(#?[A-Za-z0-9]+;)")


def cleaned(text: str) -> str:
    """Text with invisible marks removed and odd spaces made plain spaces."""
    return unicodedata.normalize("NFC", text.translate(_INVISIBLE).translate(_SPACES))


def one_line(text: str) -> str:
    """Runs of whitespace, line breaks included, as single spaces."""
    return " ".join(cleaned(text).split())


def comparable(text: str) -> str:
    """A form of words for matching: plain text, folded case, straight quotes and dashes."""
    plain = markdown_plain(text)
    return one_line(plain).translate(_QUOTES).translate(_DASHES).casefold().strip(" .")


def escape_markdown(text: str) -> str:
    """Plain text written so Markdown shows it as it is (Word text has no Markdown in it)."""
    escaped = "".join(f"\\{ch}" if ch in _MARKDOWN_SPECIAL else ch for ch in text)
    return _ENTITY.sub(r"\\&\1", escaped)


def slug(text: str, limit: int = 40) -> str:
    """Lower-case words joined by hyphens, cut at a word boundary within `limit` characters."""
    ascii_text = unicodedata.normalize("NFKD", comparable(text)).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.replace("'", ""))
    kept: list[str] = []
    for word in words:
        if kept and len("-".join([*kept, word])) > limit:
            break
        kept.append(word)
    return "-".join(kept)[:limit].strip("-")


def unique(candidate: str, taken: set[str]) -> str:
    """`candidate`, or it with the first free -2, -3... suffix; added to `taken`."""
    chosen, number = candidate, 2
    while chosen in taken:
        chosen = f"{candidate}-{number}"
        number += 1
    taken.add(chosen)
    return chosen
