"""email-validator's answers, kept between commands so reading a project need not load it.

email-validator compiles its regular expressions when imported: 20 ms, most
of what `schedule` spends on addresses. Its answer about a domain, or about a
whole address, depends on that text and on the installed email-validator and
idna alone, so each answer is kept in one file in the user's cache folder
(`core/cachefile`, shared by every project: an answer does not depend on the
project), under a key naming those libraries' versions. A command whose
addresses were all seen before gets email-validator's own answers back
without importing it; anything new is asked of email-validator and added.
Nothing is decided here: a kept answer is the answer email-validator gave.

The file is whole or ignored (digest-checked), ours alone (0600), and a miss
when it cannot be read or written; it keeps at most `MAX_ANSWERS` answers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Literal

from newsletter.core.cachefile import CacheDir, cache_key, library_versions
from newsletter.core.paths import user_cache_dir

FILE_NAME = "email-answers"
LIBRARIES = ("email_validator", "idna")
FORMAT = "email answers 1"
# Dozens of domains per list; whole addresses only for the settings' few and
# the rare address with an unusual local part.
MAX_ANSWERS = 5_000
Kind = Literal["domain", "address", "problem"]
KINDS = ("domain", "address", "problem")


class EmailAnswers:
    """Answers by kind: "domain" and "address", the normalised form (None: not valid);
    "problem", the message saying why it is not valid (None: it is)."""

    def __init__(self, cache: CacheDir | None, key: str | None) -> None:
        self.cache = cache if key is not None else None
        self.key = key or ""
        self.answers: dict[str, dict[str, str | None]] = {kind: {} for kind in KINDS}
        if self.cache is not None:
            self.answers = _parsed(self.cache.read(FILE_NAME, self.key)) or self.answers

    def get(self, kind: Kind, text: str) -> tuple[bool, str | None]:
        """(True, answer) when email-validator's answer for `text` is kept, else (False, None)."""
        kept = self.answers[kind]
        return (True, kept[text]) if text in kept else (False, None)

    def put(self, kind: Kind, text: str, answer: str | None) -> None:
        """Keep email-validator's `answer` for `text` (while there is room)."""
        if self.cache is None or sum(map(len, self.answers.values())) >= MAX_ANSWERS:
            return
        self.answers[kind][text] = answer
        payload = json.dumps(self.answers, ensure_ascii=False, sort_keys=True)
        self.cache.write(FILE_NAME, self.key, payload.encode("utf-8"))


def _parsed(payload: bytes | None) -> dict[str, dict[str, str | None]] | None:
    """The kept answers, or None unless the payload is exactly what `put` writes."""
    if payload is None:
        return None
    try:
        data = json.loads(payload.decode("utf-8"))
    except ValueError:  # not JSON, not UTF-8
        return None
    if not isinstance(data, dict) or set(data) != set(KINDS):
        return None
    for answers in data.values():
        if not isinstance(answers, dict) or not all(
            isinstance(answer, str | None) for answer in answers.values()
        ):
            return None
    return data


def email_validator_answer(
    kind: Kind, text: str, ask: Callable[[ModuleType], str | None]
) -> str | None:
    """email-validator's answer about `text`: kept from an earlier command, or `ask`ed of the
    module now (importing it) and kept."""
    answers = kept_answers()
    known, answer = answers.get(kind, text)
    if not known:
        import email_validator

        answer = ask(email_validator)
        answers.put(kind, text, answer)
    return answer


def kept_answers() -> EmailAnswers:
    """This user's kept answers (an empty store when nothing can be kept)."""
    return _answers_in(user_cache_dir())


@functools.cache  # read once a process for each cache folder
def _answers_in(base: Path | None) -> EmailAnswers:
    versions = library_versions(LIBRARIES)
    if base is None or versions is None:
        return EmailAnswers(None, None)
    return EmailAnswers(CacheDir(base), cache_key(FORMAT, versions))
