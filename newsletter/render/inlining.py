"""CSS inlined into an email's HTML by premailer, and the result kept for next time.

premailer is the slow part of rendering: 0.07 s to import (cssutils and lxml;
requests is left out, see `_premailer`) and most of a render after that. Its
result depends only on the HTML it is given, its options and the versions of
the libraries doing the work, so `inline_css_kept` keeps it in the user's cache
folder (`core/cachefile`) under a key of all of these, and `validate`, `preview`, the approval digest and `send` do not
inline unchanged HTML again: on a hit premailer is not even imported.

One wrinkle: the HTML carries the renderer's slot tokens, which hold a random
nonce made anew by every run (so content cannot forge a slot). The key and
the kept result have the nonce replaced by `NONCE_MARK`, and a hit gets this
run's nonce put back; premailer treats the tokens as opaque text and links, so
that is byte for byte what inlining this run's HTML gives. Where that cannot
be shown from the text (the mark already in it, or the nonce somewhere other
than in the tokens), nothing is kept or looked up and premailer runs.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Collection
from types import ModuleType

from newsletter.core.cachefile import CacheDir, cache_key, library_versions

NONCE_MARK = "\x00nonce\x00"
# What decides premailer's output besides the HTML: these libraries' versions.
INLINING_LIBRARIES = ("premailer", "cssutils", "cssselect", "lxml")
FORMAT = "inline 1"


def _premailer_options(base_url: str) -> dict[str, object]:
    return {
        "base_url": base_url,
        "strip_important": False,
        "keep_style_tags": False,
        "remove_classes": False,
        "allow_network": False,
        "allow_loading_external_files": False,
        "disable_validation": True,
        "cssutils_logging_level": logging.CRITICAL,
        "preserve_internal_links": True,
    }


def inline_css(document: str, base_url: str) -> str:
    """Inline the CSS of `<style>` blocks into style attributes, for mail clients.

    The responsive and dark-mode rules live in a `<style data-premailer="ignore">`
    block that premailer leaves exactly as written; `strip_important=False`
    keeps any `!important` it does process. Conditional comments for Outlook are
    comments to lxml and pass through unchanged. Relative links are resolved
    against `base_url`; nothing is fetched from the network.
    """
    inliner = _premailer().Premailer(**_premailer_options(base_url))
    result: str = inliner.transform(document, pretty_print=False)
    return result


def _premailer() -> ModuleType:
    """premailer (70 ms of imports: cssutils, lxml), without importing requests for it.

    premailer imports requests at module level only to fetch external
    stylesheets, which `allow_network=False` forbids, and requests with urllib3
    is another 40 ms of every command that inlines. So unless requests is
    already loaded, premailer's import is handed a stand-in that imports the
    real requests the first time anything is asked of it (PEP 562), and which
    is taken out of `sys.modules` straight after: the rest of the process
    imports requests as usual.
    """
    if "premailer" in sys.modules or "requests" in sys.modules:
        return importlib.import_module("premailer")
    stand_in = _requests_when_used()
    sys.modules["requests"] = stand_in
    try:
        return importlib.import_module("premailer")
    finally:
        if sys.modules.get("requests") is stand_in:
            del sys.modules["requests"]


def _requests_when_used() -> ModuleType:
    stand_in = ModuleType("requests", "requests, imported when first used")

    def real_attribute(name: str) -> object:
        if sys.modules.get("requests") is stand_in:
            del sys.modules["requests"]
        return getattr(importlib.import_module("requests"), name)

    stand_in.__getattr__ = real_attribute  # type: ignore[method-assign]
    return stand_in


def _without_nonce(text: str, nonce: str, tokens: Collection[str]) -> str | None:
    """`text` with the nonce replaced by NONCE_MARK; None unless it occurs in the tokens alone."""
    if NONCE_MARK in text or not nonce:
        return None
    if text.count(nonce) != sum(text.count(token) for token in tokens):
        return None
    return text.replace(nonce, NONCE_MARK)


def inline_css_kept(
    document: str,
    base_url: str,
    slot: tuple[str, Collection[str]],
    cache: CacheDir | None,
    name: str,
) -> str:
    """`inline_css(document, base_url)`, from `cache` file `name` when it holds this very input.

    `slot` is the renderer's nonce and its slot tokens (each holds the nonce once).
    """
    nonce, tokens = slot
    keyed = _without_nonce(document, nonce, tokens)
    versions = (
        library_versions(INLINING_LIBRARIES) if cache is not None and keyed is not None else None
    )
    if cache is None or keyed is None or versions is None:
        return inline_css(document, base_url)
    options = repr(sorted(_premailer_options(base_url).items()))
    key = cache_key(FORMAT, versions, options, keyed)
    kept = cache.read(name, key)
    if kept is not None:
        try:
            return kept.decode("utf-8").replace(NONCE_MARK, nonce)
        except UnicodeDecodeError:
            pass  # not what we wrote: inline again
    inlined = inline_css(document, base_url)
    result = _without_nonce(inlined, nonce, tokens)
    if result is not None:
        cache.write(name, key, result.encode("utf-8"))
    return inlined
