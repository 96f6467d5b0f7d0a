"""Read a YAML mapping into typed values, every mistake located at `path:line:column`.

The settings, the catalogue and the issues are all YAML mappings, and all are
read here the same way: a block that is not a mapping, a key that is not a
field (with a did-you-mean hint), a value of the wrong kind is each a
`Problem` placed where it is written, and reading carries on, so `validate`
reports every mistake in a file at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any

from newsletter.checks import unknown_fields
from newsletter.errors import Problem
from newsletter.yamlfile import KeyPath, YamlDocument


class Invalid(ValueError):
    """A value that cannot be read as its field's type; the message says why, for a person."""


def text(value: Any, name: str) -> str:
    """A scalar written as text, a number or a date-like word; never a list, block or true/false."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"`{name}` must be text")
    return str(value)


class FieldReader:
    """Typed reads from one YAML document, collecting located problems instead of raising."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = list(doc.problems)

    def error(self, key_path: KeyPath, message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(key_path, message, at_key=at_key))

    def warning(self, key_path: KeyPath, message: str) -> None:
        self.problems.append(self.doc.problem(key_path, message, "warning"))

    def mapping(
        self,
        value: Any,
        key_path: KeyPath,
        known: Collection[str] | None,
        what: str,
        *,
        not_a_mapping: str | None = None,
        refuse: Callable[[str], str | None] | None = None,
    ) -> dict[str, Any]:
        """`value` as a block of fields; a problem for anything else and for each unknown key.

        `known` None accepts any key. `refuse` names a key that must not be
        written at all (a secret) and says why, in place of "not a field".
        """
        if not isinstance(value, dict):
            self.error(
                key_path, not_a_mapping or f"{what} must be a block of fields (`name: value` lines)"
            )
            return {}
        refused = {key: why for key in value if refuse and (why := refuse(str(key)))}
        if known is not None:
            ordinary = {k: v for k, v in value.items() if k not in refused}
            self.problems += unknown_fields(self.doc, key_path, ordinary, known, what)
        for key, why in refused.items():
            self.error((*key_path, str(key)), why, at_key=True)
        return value

    def text(
        self,
        mapping: dict[str, Any],
        key_path: KeyPath,
        *,
        required: bool = True,
        one_line: bool = False,
    ) -> str:
        """The text at `key_path`, stripped; blank counts as missing."""
        name = str(key_path[-1])
        value = mapping.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                where = key_path if name in mapping else key_path[:-1]
                self.error(where, f"`{name}` is required and must not be empty")
            return ""
        try:
            written = text(value, name).strip()
        except Invalid as why:
            self.error(key_path, str(why))
            return ""
        if one_line and ("\n" in written or "\r" in written):
            self.error(key_path, f"`{name}` must be on one line (it is used in an email header)")
        return written

    def text_list(self, mapping: dict[str, Any], key_path: KeyPath) -> list[str]:
        """A list of non-empty texts; a single text stands for a list of one."""
        name = str(key_path[-1])
        value = mapping.get(name)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(key_path, f"`{name}` must be a list")
            return []
        result = []
        for index, item in enumerate(value):
            if (
                not isinstance(item, str | int | float)
                or isinstance(item, bool)
                or not str(item).strip()
            ):
                self.error((*key_path, index), f"each entry of `{name}` must be non-empty text")
                continue
            result.append(str(item).strip())
        return result

    def items(self, mapping: dict[str, Any], key_path: KeyPath) -> Iterator[tuple[int, Any]]:
        """(index, entry) for each entry of the list at `key_path`; nothing when it is absent."""
        name = str(key_path[-1])
        value = mapping.get(name)
        if value is None:
            return
        if not isinstance(value, list):
            self.error(key_path, f"`{name}` must be a list (each entry starting with `- `)")
            return
        yield from enumerate(value)
