"""Small field checks shared by the settings, content and audience loaders.

Each returns problems rather than raising, so `validate` can report every
mistake in a file at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from newsletter.core.email_answers import kept_answers
from newsletter.core.errors import Problem
from newsletter.core.yamlfile import KeyPath, YamlDocument


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to `name`, if any is close enough to be a likely typo."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    match = nearest(name, known)
    return f"; did you mean `{match}`?" if match else ""


def unknown_fields(
    doc: YamlDocument,
    key_path: KeyPath,
    mapping: Mapping[Any, Any],
    known: Iterable[str],
    what: str,
) -> list[Problem]:
    """A problem for every key of `mapping` that is not a known field name."""
    known = list(known)
    problems = []
    for key in mapping:
        if key not in known:
            problems.append(
                doc.problem(
                    (*key_path, str(key)),
                    f"`{key}` is not a field of {what}{did_you_mean(str(key), known)}",
                    at_key=True,
                )
            )
    return problems


# A plain ASCII dot-atom local part, which email-validator always accepts as it is.
_PLAIN_LOCAL_PART = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)


# email-validator (20 ms to import) is imported only for an answer not kept
# from an earlier command (`email_answers`).


def _domain(validator: ModuleType, domain: str) -> str | None:
    try:
        checked: str = validator.validate_email(f"x@{domain}", check_deliverability=False).domain
    except validator.EmailNotValidError:
        return None
    return checked


def _normalised(validator: ModuleType, address: str) -> str | None:
    try:
        checked: str = validator.validate_email(address, check_deliverability=False).normalized
    except validator.EmailNotValidError:
        return None
    return checked


def _problem(validator: ModuleType, address: str) -> str | None:
    try:
        validator.validate_email(address.strip(), check_deliverability=False)
    except validator.EmailNotValidError as error:
        return f"`{address}` is not a valid email address ({error})"
    return None


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    return kept_answers().domain(domain, lambda validator: _domain(validator, domain))


def check_email(address: str) -> str | None:
    """The normalised address, or None if email-validator rejects its syntax (no DNS look-up)."""
    # Most of email-validator's time goes on the domain (IDNA), and a list of
    # 100,000 people has a few dozen domains: check each domain once, and send
    # anything but a plain local part through the full check.
    local, at, domain = address.rpartition("@")
    if at and len(address) <= 254 and len(local) <= 64 and _PLAIN_LOCAL_PART.match(local):
        checked = _checked_domain(domain)
        return None if checked is None else f"{local}@{checked}"
    import email_validator  # not kept: the normalised form is a person's address

    return _normalised(email_validator, address)


def email_problem(address: object) -> str | None:
    """Why `address` is not a usable email address, in plain words; None when it is fine."""
    if not isinstance(address, str) or not address.strip():
        return "an email address is needed here"
    return kept_answers().problem(address, lambda validator: _problem(validator, address))


def link_problem(url: object) -> str | None:
    """Why `url` is not a safe link for an email; None when it is an absolute https: or mailto: link."""
    if not isinstance(url, str) or not url.strip():
        return "a link address is needed here"
    if any(ch in url for ch in "\r\n\t "):
        return f"the link `{url.strip()}` contains spaces or line breaks"
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https":
        if not urlsplit(url).netloc:
            return f"the link `{url}` has no website name after https://"
        return None
    if scheme == "mailto":
        return None
    if scheme == "http":
        return f"the link `{url}` uses http:, which is not secure; use https:"
    if scheme in {"javascript", "data", "vbscript", "file"}:
        return f"the link `{url}` uses {scheme}:, which is never allowed in an email"
    if not scheme:
        return f"the link `{url}` is not a full web address; it must start with https://"
    return f"the link `{url}` uses {scheme}:; only https: and mailto: links are allowed"
