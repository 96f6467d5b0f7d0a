"""email-validator's answers, kept between commands so reading a project need not load it.

email-validator compiles its regular expressions when imported: 20 ms, most
of what `schedule` spends on addresses. Its answer about a domain, or whether
an address is valid, depends on that text and on the installed
email-validator and idna alone, so answers are kept in one file in the user's
cache folder (`core/cachefile`, shared by every project: an answer does not
depend on the project), under a key naming those libraries' versions. A
command whose addresses were all seen before gets email-validator's own
answers back without importing it; anything new is asked of email-validator
and added. Nothing is decided here: a kept answer is the answer it gave.

What is kept: each domain with its normalised form (or that it is not valid),
and the sha256 of each whole address found valid, never the address itself
(people's addresses stay in the project and its ledger); an address found
not valid is asked again each time, its message naming it. The file is whole
or ignored (digest-checked), ours alone (0600), and a miss when it cannot be
read or written; it keeps at most `MAX_ANSWERS` answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from newsletter.core.cachefile import CacheDir, cache_key, library_versions
from newsletter.core.paths import user_cache_dir

FILE_NAME = "email-answers"
LIBRARIES = ("email_validator", "idna")
FORMAT = "email answers 2"
# Dozens of domains per list, and the few addresses settings and commands name.
MAX_ANSWERS = 5_000
Ask = Callable[[ModuleType], str | None]


def _digest(address: str) -> str:
    return hashlib.sha256(address.encode("utf-8")).hexdigest()


class EmailAnswers:
    """The kept answers: domains with their normalised form (None: not valid), and the
    digests of addresses found valid."""

    def __init__(self, cache: CacheDir | None, key: str | None) -> None:
        self.cache = cache if key is not None else None
        self.key = key or ""
        self.domains: dict[str, str | None] = {}
        self.valid: set[str] = set()
        if self.cache is not None:
            self._load(self.cache.read(FILE_NAME, self.key))

    def _load(self, payload: bytes | None) -> None:
        """Take the kept answers, unless the payload is not exactly what `_save` writes."""
        try:
            data = json.loads(payload.decode("utf-8")) if payload is not None else None
        except ValueError:  # not JSON, not UTF-8
            return
        if not isinstance(data, dict) or set(data) != {"domains", "valid"}:
            return
        domains, valid = data["domains"], data["valid"]
        if not isinstance(domains, dict) or not isinstance(valid, list):
            return
        if all(isinstance(v, str | None) for v in domains.values()) and all(
            isinstance(v, str) for v in valid
        ):
            self.domains, self.valid = domains, set(valid)

    def _save(self) -> None:
        if self.cache is None:
            return
        data = {"domains": self.domains, "valid": sorted(self.valid)}
        payload = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
        self.cache.write(FILE_NAME, self.key, payload)

    def _full(self) -> bool:
        return len(self.domains) + len(self.valid) >= MAX_ANSWERS

    def domain(self, domain: str, ask: Ask) -> str | None:
        """The normalised `domain` (None: not valid), as email-validator answers `ask`."""
        if domain in self.domains:
            return self.domains[domain]
        answer = ask(_email_validator())
        if not self._full():
            self.domains[domain] = answer
            self._save()
        return answer

    def problem(self, address: str, ask: Ask) -> str | None:
        """Why `address` is not valid (None: it is), as email-validator answers `ask`."""
        digest = _digest(address)
        if digest in self.valid:
            return None
        answer = ask(_email_validator())
        if answer is None and not self._full():
            self.valid.add(digest)
            self._save()
        return answer


def _email_validator() -> ModuleType:
    import email_validator

    return email_validator


def kept_answers() -> EmailAnswers:
    """This user's kept answers (an empty store when nothing can be kept)."""
    return _answers_in(user_cache_dir())


@functools.cache  # read once a process for each cache folder
def _answers_in(base: Path | None) -> EmailAnswers:
    versions = library_versions(LIBRARIES)
    if base is None or versions is None:
        return EmailAnswers(None, None)
    return EmailAnswers(CacheDir(base), cache_key(FORMAT, versions))
